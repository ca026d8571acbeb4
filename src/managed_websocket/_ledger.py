"""The outage ledger and gap detection: which intervals had no live connection, which sequence
numbers never arrived. Pure bookkeeping: the caller passes ``now``.

An outage opens when a connection is lost (or replaced) and closes when the next connection
delivers. Each record has both clocks: ``start``/``end`` on the event loop's clock (monotonic, for
durations; the clock of ``ws.stats``), ``started_at``/``ended_at`` on the wall clock
(``time.time()``, the clock of the events' ``at``, for logs and for lining an outage up with an
exchange's timestamps). When the user gives ``sequence_of(message)``, every jump in sequence numbers is a gap
(also within one connection); a gap that follows an outage is attributed to it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ._models import DisconnectReason

__all__ = ["Outage", "OutageLedger"]


@dataclass(frozen=True, slots=True)
class Outage:
    """One interval without a live connection (or with a replaced one).

    ``start``/``end`` are on the event loop's clock (``anyio.current_time()``: monotonic, use them
    for durations); ``started_at``/``ended_at`` are the same instants on the wall clock
    (``time.time()``, like every event's ``at``). ``covered``: an overlapping connection
    delivered throughout (a make-before-break rotation), so nothing was lost.
    """

    start: float
    end: float | None  # None while still open
    reason: DisconnectReason
    code: int | None
    covered: bool = False  # an overlapping connection delivered across it (rotation)
    first_missing: int | None = None  # sequence numbers lost in it, when known
    last_missing: int | None = None
    started_at: float | None = None  # wall clock (time.time()); None when not given
    ended_at: float | None = None  # wall clock; None while still open

    @property
    def duration(self) -> float | None:
        """``end - start`` in seconds, or None while the outage is still open."""
        return None if self.end is None else self.end - self.start


class OutageLedger:
    __slots__ = ("_gap_target", "_last_seq", "_open", "_records")

    def __init__(self) -> None:
        self._records: list[Outage] = []
        self._open: Outage | None = None
        self._last_seq: int | None = None
        self._gap_target: int | None = None  # index of the outage the next gap belongs to

    @property
    def records(self) -> tuple[Outage, ...]:
        """Every outage so far, the open one last."""
        return tuple(self._records) + ((self._open,) if self._open is not None else ())

    def lost(
        self, now: float, reason: DisconnectReason, code: int | None, *, wall: float | None = None
    ) -> None:
        """The live connection ended (``now`` on the loop clock, ``wall`` the same instant on
        the wall clock)."""
        if self._open is None:
            self._open = Outage(start=now, end=None, reason=reason, code=code, started_at=wall)

    def restored(self, now: float, *, wall: float | None = None) -> None:
        """A connection is live again."""
        if self._open is not None:
            self._records.append(replace(self._open, end=now, ended_at=wall))
            self._gap_target = len(self._records) - 1
            self._open = None

    def rotated(
        self,
        start: float,
        end: float,
        reason: DisconnectReason = DisconnectReason.SCHEDULED,
        *,
        started_at: float | None = None,
        ended_at: float | None = None,
    ) -> None:
        """A rotation switched connections; the overlap covered the interval. ``reason``:
        SCHEDULED (``max_connection_age``) or USER_REQUESTED (``rotate()``)."""
        self._records.append(
            Outage(
                start,
                end,
                reason,
                1000,
                covered=True,
                started_at=started_at,
                ended_at=ended_at,
            )
        )

    def observe(self, seq: int) -> tuple[int, int] | None:
        """Record a sequence number; return the missing range (first, last) if it jumped."""
        last, self._last_seq = self._last_seq, seq
        gap: tuple[int, int] | None = None
        if last is not None and seq > last + 1:
            gap = (last + 1, seq - 1)
            self._attribute(gap)
        self._gap_target = None  # only the first message after an outage can close its gap
        return gap

    def _attribute(self, gap: tuple[int, int]) -> None:
        index = self._gap_target
        if index is None:
            return
        record = self._records[index]
        self._records[index] = replace(record, first_missing=gap[0], last_missing=gap[1])
