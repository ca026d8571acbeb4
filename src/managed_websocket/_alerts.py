"""Alert throttling: at most one alert per interval, the first at once, the rest aggregated.

Used for ``on_disconnect_alert`` (SPEC section 5) and for the queue-overflow ``on_alert``. Pure: the
caller passes ``now`` from its own clock, so tests drive it with plain numbers.
"""

from __future__ import annotations

import math

__all__ = ["AlertThrottle"]


class AlertThrottle:
    """Counts events and says when an alert may fire, and with which aggregated count.

    Call :meth:`record` for each event; when it returns a count, fire the alert with it. Events
    that arrive inside the interval are held; a timer may call :meth:`flush` at
    :meth:`flush_deadline` so that the tail of a burst is still reported.
    """

    __slots__ = ("_interval", "_last_alert", "_pending")

    def __init__(self, interval: float) -> None:
        if math.isnan(interval) or interval < 0:
            raise ValueError(f"interval must be >= 0, got {interval!r}")
        self._interval = interval
        # None = never alerted. The replaced system started at 0.0 on the monotonic clock and so
        # swallowed the first alert on a host up for less than the interval (its defect B12).
        self._last_alert: float | None = None
        self._pending = 0

    @property
    def interval(self) -> float:
        return self._interval

    @property
    def pending(self) -> int:
        """Events counted since the last alert, not yet reported."""
        return self._pending

    def record(self, now: float) -> int | None:
        """Count one event at ``now``; return the count to report if an alert fires now, else None.

        The count includes this event. The first event ever always fires, whatever ``now`` is.
        """
        self._pending += 1
        return self.flush(now)

    def flush(self, now: float) -> int | None:
        """Return (and clear) the pending count if the interval has passed, else None."""
        if self._pending == 0:
            return None
        last = self._last_alert
        if last is not None and now - last < self._interval:
            return None
        count, self._pending, self._last_alert = self._pending, 0, now
        return count

    def flush_deadline(self) -> float | None:
        """When :meth:`flush` will next return a count, or None when nothing is pending."""
        # Events are only ever pending after an alert fired (the first one always fires), so
        # _last_alert is set whenever _pending is not 0.
        if self._pending == 0 or self._last_alert is None:
            return None
        return self._last_alert + self._interval

    def __repr__(self) -> str:
        return f"AlertThrottle(interval={self._interval!r}, pending={self._pending})"
