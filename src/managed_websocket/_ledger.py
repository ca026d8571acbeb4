"""The outage ledger and gap detection: which intervals had no live connection, which sequence
numbers never arrived. Pure bookkeeping: the caller passes ``now``.

An outage opens when a connection is lost (or replaced) and closes when the next connection
delivers. When the user gives ``sequence_of(message)``, every jump in sequence numbers is a gap
(also within one connection); a gap that follows an outage is attributed to it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ._models import DisconnectReason

__all__ = ["Outage", "OutageLedger"]


@dataclass(frozen=True, slots=True)
class Outage:
    """One interval without a live connection (or with a replaced one)."""

    start: float
    end: float | None  # None while still open
    reason: DisconnectReason
    code: int | None
    covered: bool = False  # an overlapping connection delivered across it (rotation)
    first_missing: int | None = None  # sequence numbers lost in it, when known
    last_missing: int | None = None

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

    def lost(self, now: float, reason: DisconnectReason, code: int | None) -> None:
        """The live connection ended."""
        if self._open is None:
            self._open = Outage(start=now, end=None, reason=reason, code=code)

    def restored(self, now: float) -> None:
        """A connection is live again."""
        if self._open is not None:
            self._records.append(replace(self._open, end=now))
            self._gap_target = len(self._records) - 1
            self._open = None

    def rotated(self, start: float, end: float) -> None:
        """A planned rotation switched connections; the overlap covered the interval."""
        self._records.append(Outage(start, end, DisconnectReason.SCHEDULED, 1000, covered=True))

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
