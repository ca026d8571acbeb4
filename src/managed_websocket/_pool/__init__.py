"""The sharded pool: many ManagedWebSockets behind one consumer stream (``open_managed_pool``)."""

from __future__ import annotations

from ._events import ChannelsReplaced, PoolEvent, ShardClosed, ShardFailed, ShardOpened
from ._pool import (
    ManagedWebSocketPool,
    PoolEventListener,
    PoolIterator,
    open_managed_pool,
)
from ._shard import PoolShard, ShardState
from ._stats import PoolStats

__all__ = [
    "ChannelsReplaced",
    "ManagedWebSocketPool",
    "PoolEvent",
    "PoolEventListener",
    "PoolIterator",
    "PoolShard",
    "PoolStats",
    "ShardClosed",
    "ShardFailed",
    "ShardOpened",
    "ShardState",
    "open_managed_pool",
]
