"""A token bucket for ``send_rate_limit``: pure arithmetic on a clock the caller passes in.

A send *reserves* a token and learns how long to wait for it. Reservations may run the bucket
below zero: each later one waits correspondingly longer, so concurrent senders are paced in the
order they asked, and none is dropped.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` (default: ``rate``, at least one) saved up."""

    __slots__ = ("_burst", "_rate", "_tokens", "_updated")

    def __init__(self, rate: float, now: float, burst: float | None = None) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        self._rate = rate
        self._burst = max(burst if burst is not None else rate, 1.0)
        self._tokens = self._burst
        self._updated = now

    def reserve(self, now: float) -> float:
        """Take a token; return the seconds to wait before using it (0.0: now)."""
        self._refill(now)
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def _refill(self, now: float) -> None:
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self._tokens + elapsed * self._rate, self._burst)
            self._updated = now
