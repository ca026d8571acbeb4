"""The connect rate: when the next dial may start. Pure, no I/O.

``connect_rate=(count, seconds)`` spaces dials evenly, one every ``seconds / count`` plus a
margin (5 % of that, at most 50 ms), never in bursts. Even spacing keeps every window of
``seconds`` at ``count`` dials or fewer, and the margin absorbs the jitter between our clock and
the server's, so a server that counts arrivals in a sliding window does not see ``count + 1``.
Every dial of every shard takes a slot: first dials, reconnects and rotations alike.
"""

from __future__ import annotations

__all__ = ["MARGIN", "MAX_MARGIN", "DialSchedule"]

MARGIN = 0.05
MAX_MARGIN = 0.05


class DialSchedule:
    __slots__ = ("_last", "interval")

    def __init__(self, count: int, seconds: float) -> None:
        base = seconds / count
        self.interval = base + min(base * MARGIN, MAX_MARGIN)
        self._last: float | None = None

    def reserve(self, now: float) -> float:
        """Take the next free slot at or after ``now``; return when it is."""
        at = now if self._last is None else max(now, self._last + self.interval)
        self._last = at
        return at
