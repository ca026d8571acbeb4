"""Pool statistics: one WebSocketStats per shard, and their totals."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .._models import WebSocketStats

__all__ = ["PoolStats"]

_SUMMED = tuple(
    f.name for f in fields(WebSocketStats) if not f.name.startswith("_") and f.type in ("int", int)
)


@dataclass
class PoolStats:
    """``pool.stats``: per-shard counters (live, not copies) and the pool's own."""

    #: shard index -> that shard's live :class:`WebSocketStats`, every shard the pool ran.
    shards: dict[int, WebSocketStats] = field(default_factory=dict)
    shards_opened: int = 0
    shards_failed: int = 0
    shards_closed: int = 0  # closed by the pool (empty, or at shutdown)
    channels_replaced: int = 0  # channels moved off failed shards
    rate_limit_waits: float = 0.0  # seconds dials waited for a connect_rate slot, in total

    @property
    def total(self) -> WebSocketStats:
        """A new :class:`WebSocketStats` whose counters are the sums over every shard."""
        total = WebSocketStats()
        for stats in self.shards.values():
            for name in _SUMMED:
                setattr(total, name, getattr(total, name) + getattr(stats, name))
        return total

    @property
    def messages_received(self) -> int:
        return sum(stats.messages_received for stats in self.shards.values())

    @property
    def messages_dropped(self) -> int:
        return sum(stats.messages_dropped for stats in self.shards.values())

    @property
    def dropped_per_shard(self) -> dict[int, int]:
        """shard -> messages its overflow policy dropped."""
        return {index: stats.messages_dropped for index, stats in self.shards.items()}
