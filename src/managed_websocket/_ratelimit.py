"""The pacing of ``send_rate_limit``: pure arithmetic on a clock the caller passes in.

``R`` messages a second means at most ``R`` in any one-second window (a fraction rounds
down; below one, one message per ``1/R`` seconds), as venues count them: a burst of ``R`` goes at once, and the
next message waits until the oldest of that burst is a second old. (A token bucket with burst
``R`` would let ``2R`` through in the second after a pause, and Binance closes with 1008 at
the sixth message in a second.)

A send *reserves* its slot and learns how long to wait for it, so concurrent senders are paced
in the order they asked and none is dropped.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["SendPacer"]


class SendPacer:
    """At most ``rate`` messages a second, measured when they are sent."""

    __slots__ = ("_count", "_sent", "_window")

    def __init__(self, rate: float) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be > 0, got {rate!r}")
        self._count = max(math.floor(rate), 1)
        self._window = max(1.0, 1.0 / rate)
        self._sent: deque[float] = deque()  # the last _count reserved send times

    def reserve(self, now: float) -> float:
        """Reserve the next send; return the seconds to wait before it (0.0: now)."""
        sent = self._sent
        at = now
        if len(sent) == self._count:
            at = max(now, sent.popleft() + self._window)
        sent.append(at)
        return at - now
