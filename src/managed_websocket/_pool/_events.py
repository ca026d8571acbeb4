"""Pool events: every shard's lifecycle events, tagged with the shard, plus the pool's own.

``pool.events()`` yields :class:`PoolEvent` values: ``event.shard`` is the shard's index and
``event.event`` what happened, either one of the manager's events (``Connected``,
``Disconnected``, ``RotationCompleted``...) as that shard's manager published it, or one of the
pool's events below.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._events import LifecycleEvent

__all__ = ["ChannelsReplaced", "PoolEvent", "ShardClosed", "ShardFailed", "ShardOpened"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolEvent(LifecycleEvent):
    """``event`` happened on shard ``shard`` (``at`` is the event's own time)."""

    shard: int
    event: LifecycleEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardOpened(LifecycleEvent):
    """The pool opened a new shard for ``channels`` channels (its first dial follows)."""

    channels: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardFailed(LifecycleEvent):
    """The shard's manager failed for good (``error``, e.g. a ``WebSocketReconnectError``); its
    ``channels`` channels are placed again on other shards (see :class:`ChannelsReplaced`)."""

    error: BaseException
    channels: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardClosed(LifecycleEvent):
    """The pool closed the shard: ``reason`` is ``"empty"`` (no channel left for
    ``empty_shard_grace`` seconds) or ``"shutdown"``."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelsReplaced(LifecycleEvent):
    """The channels of a failed shard were placed again: ``placement`` maps each receiving shard
    to how many it took."""

    channels: tuple[str, ...]
    placement: dict[int, int]
