"""One shard of a pool: a ManagedWebSocket, what the pool knows about it, and its state."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .._models import ConnectionState, WebSocketStats

if TYPE_CHECKING:
    from .._manager import ManagedWebSocket

__all__ = ["PoolShard", "ShardState"]


class ShardState(enum.Enum):
    """Where a shard is in the pool's eyes (its connection's own state is
    :attr:`PoolShard.connection_state`)."""

    #: Opened by the pool; its first connection is not open yet.
    STARTING = "starting"
    #: Its manager runs: connected, or reconnecting on its own.
    ACTIVE = "active"
    #: It carries no channel; closed once ``empty_shard_grace`` passes without new ones.
    EMPTY = "empty"
    #: Closed by the pool (empty for too long, or the pool shut down).
    STOPPED = "stopped"
    #: Its manager failed for good (:attr:`PoolShard.error`); its channels moved elsewhere.
    FAILED = "failed"


class PoolShard:
    """A read-only view of one shard: ``pool.shards[i]``."""

    __slots__ = (
        "_group",
        "_ready",
        "_send_scope",
        "error",
        "grace_scope",
        "index",
        "state",
        "ws",
    )

    def __init__(self, index: int, ws: ManagedWebSocket) -> None:
        #: The shard's index: what ``stream(with_shard=True)`` and events name it by.
        self.index: int = index
        #: Its manager (for inspection; the pool drives it).
        self.ws: ManagedWebSocket = ws
        self.state: ShardState = ShardState.STARTING
        #: Why it failed, once :attr:`state` is FAILED.
        self.error: BaseException | None = None
        self.grace_scope: anyio.CancelScope | None = None
        self._ready = anyio.Event()  # connected for the first time, failed, or closed
        self._send_scope: anyio.CancelScope | None = None
        self._group: anyio.abc.TaskGroup | None = None

    def __repr__(self) -> str:
        return f"<PoolShard {self.index} {self.state.name} {self.connection_state.name}>"

    @property
    def connection_state(self) -> ConnectionState:
        """Its manager's :class:`ConnectionState`."""
        return self.ws.state

    @property
    def stats(self) -> WebSocketStats:
        """Its manager's live counters."""
        return self.ws.stats

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels its manager is subscribed to."""
        return self.ws.subscriptions


class ShardStatus:
    """The ``task_status`` a shard's ``run()`` reports to: sets the shard's ready event."""

    __slots__ = ("_shard",)

    def __init__(self, shard: PoolShard) -> None:
        self._shard = shard

    def started(self, value: Any = None) -> None:
        if self._shard.state is ShardState.STARTING:
            self._shard.state = ShardState.ACTIVE
        self._shard._ready.set()
