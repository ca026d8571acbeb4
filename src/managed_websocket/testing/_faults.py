"""Handshake faults scheduled for future connections.

Pure bookkeeping, no I/O: the server asks :meth:`FaultSchedule.next_fault` once per accepted TCP
connection, in accept order, and hands the answer to that connection's task. Faults queue up in
the order they were scheduled, so ``refuse_handshakes(503, count=2)`` followed by ``flap()`` refuses
the next two connections and flaps the third. A fault with ``count=None`` repeats until
:meth:`FaultSchedule.clear`, so anything queued behind it never runs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["FaultSchedule", "Flap", "HandshakeFault", "Refuse", "Stall"]


@dataclass(frozen=True)
class Refuse:
    """Answer the upgrade request with an HTTP error instead of 101."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class Flap:
    """Complete the upgrade, then close at once: with ``code``, or by dropping TCP if ``None``."""

    code: int | None


@dataclass(frozen=True)
class Stall:
    """Read the upgrade request and never answer it."""


HandshakeFault = Refuse | Flap | Stall


class FaultSchedule:
    """A FIFO of handshake faults, each good for a number of connections."""

    def __init__(self) -> None:
        # Each entry is (fault, connections left); None means "until cleared".
        self._queue: deque[tuple[HandshakeFault, int | None]] = deque()

    def add(self, fault: HandshakeFault, count: int | None) -> None:
        if count is not None and count < 1:
            raise ValueError(f"count must be a positive integer or None, not {count!r}")
        self._queue.append((fault, count))

    def next_fault(self) -> HandshakeFault | None:
        """Consume and return the fault for the next connection, or ``None`` for normal service."""
        if not self._queue:
            return None
        fault, left = self._queue[0]
        if left is not None:
            if left == 1:
                self._queue.popleft()
            else:
                self._queue[0] = (fault, left - 1)
        return fault

    def clear(self) -> None:
        self._queue.clear()
