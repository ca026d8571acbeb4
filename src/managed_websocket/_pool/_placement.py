"""Placement: which shard carries which channel. Pure, no I/O.

Channels fill the open shards first, in shard order (first fit), each up to the per-connection
cap; what does not fit goes to new shards, ``cap`` channels each. Shard indexes are never reused,
so an index names one connection's history for the whole life of the pool (``with_shard``,
events, stats). A placement that would need more shards than ``max_shards`` changes nothing and
raises :class:`PlacementFull`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["Placement", "PlacementFull"]


class PlacementFull(Exception):
    """Not enough room: ``channels`` were not placed (nothing was)."""

    def __init__(self, channels: tuple[str, ...], message: str) -> None:
        self.channels = channels
        super().__init__(message)


class Placement:
    __slots__ = ("_next", "_owner", "_shards", "cap", "max_shards")

    def __init__(self, cap: int, max_shards: int | None = None) -> None:
        self.cap = cap
        self.max_shards = max_shards
        self._shards: dict[int, dict[str, None]] = {}  # shard -> its channels, in order
        self._owner: dict[str, int] = {}
        self._next = 0

    @property
    def shards(self) -> dict[int, tuple[str, ...]]:
        """Every open shard (empty ones too) and its channels, in shard order."""
        return {index: tuple(channels) for index, channels in self._shards.items()}

    def __contains__(self, shard: int) -> bool:
        return shard in self._shards

    def __len__(self) -> int:
        return len(self._shards)

    def owner(self, channel: str) -> int | None:
        return self._owner.get(channel)

    def channels_of(self, shard: int) -> tuple[str, ...]:
        return tuple(self._shards.get(shard, ()))

    def assign(self, channels: Iterable[str]) -> dict[int, list[str]]:
        """Place the channels not placed yet; return shard -> the channels it got, in order.
        Shards that did not exist before are new (the caller opens them)."""
        new = [c for c in dict.fromkeys(channels) if c not in self._owner]
        if not new:
            return {}
        free = sum(self.cap - len(chans) for chans in self._shards.values())
        needed = max(0, math.ceil((len(new) - free) / self.cap))
        if self.max_shards is not None and len(self._shards) + needed > self.max_shards:
            raise PlacementFull(
                tuple(new),
                f"no room for {len(new)} more channels: {len(self._owner)} placed on "
                f"{len(self._shards)} connections, at most {self.max_shards} connections of "
                f"{self.cap} channels (max_connections, max_subscriptions_per_connection)",
            )
        plan: dict[int, list[str]] = {}
        pending = iter(new)
        remaining = len(new)
        for index, chans in self._shards.items():
            take = min(self.cap - len(chans), remaining)
            for _ in range(take):
                self._put(index, next(pending), plan)
            remaining -= take
            if not remaining:
                return plan
        while remaining:
            index = self._open()
            take = min(self.cap, remaining)
            for _ in range(take):
                self._put(index, next(pending), plan)
            remaining -= take
        return plan

    def release(self, channels: Iterable[str]) -> dict[int, list[str]]:
        """Remove placed channels; return shard -> the channels it lost. Unknown ones are
        ignored. Shards left empty stay open (see :meth:`empty`)."""
        removed: dict[int, list[str]] = {}
        for channel in dict.fromkeys(channels):
            index = self._owner.pop(channel, None)
            if index is not None:
                del self._shards[index][channel]
                removed.setdefault(index, []).append(channel)
        return removed

    def empty(self) -> list[int]:
        """The open shards that carry no channel."""
        return [index for index, chans in self._shards.items() if not chans]

    def close(self, shard: int) -> list[str]:
        """Forget a shard; return the channels it carried (now unplaced), in order."""
        chans = self._shards.pop(shard, {})
        for channel in chans:
            del self._owner[channel]
        return list(chans)

    def _open(self) -> int:
        index = self._next
        self._next += 1
        self._shards[index] = {}
        return index

    def _put(self, index: int, channel: str, plan: dict[int, list[str]]) -> None:
        self._shards[index][channel] = None
        self._owner[channel] = index
        plan.setdefault(index, []).append(channel)
