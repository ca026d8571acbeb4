"""A lock that costs next to nothing while nobody waits for it.

Every connection holds a few locks (sending, reading, delivering) that are almost never contended.
``anyio.Lock`` builds its wait queue up front: a ``collections.deque`` (about 760 bytes, its first
block of 64 slots) on asyncio, a ``trio.Lock`` with its parking lot on trio. :class:`FastLock`
keeps a flag and a list of waiters' events, so an idle connection pays for neither.
"""

from __future__ import annotations

from types import TracebackType

import anyio
from anyio.lowlevel import checkpoint_if_cancelled

__all__ = ["FastLock"]


class FastLock:
    """``async with lock:`` as ``anyio.Lock(fast_acquire=True)``: FIFO, and a free lock is taken
    without yielding to the event loop (a cancelled task still cannot take it). Not reentrant.

    A release hands the lock straight to the first waiter (it stays locked meanwhile); a waiter
    that is cancelled after the hand-off passes it on to the next one.
    """

    __slots__ = ("_held", "_waiters")

    def __init__(self) -> None:
        self._held = False
        self._waiters: list[anyio.Event] = []

    def locked(self) -> bool:
        return self._held

    async def __aenter__(self) -> None:
        await self.acquire()

    def acquire_nowait(self) -> bool:
        """Take the lock if it is free, without the cancellation check of :meth:`acquire`: for
        a caller whose next step checks before it does anything (a socket read or write)."""
        if self._held:
            return False
        self._held = True
        return True

    async def acquire(self) -> None:
        await checkpoint_if_cancelled()
        if not self._held:
            self._held = True
            return
        wake = anyio.Event()
        self._waiters.append(wake)
        try:
            await wake.wait()
        except BaseException:
            if wake.is_set():
                self._release()  # it was handed to us as we were cancelled: pass it on
            else:
                self._waiters.remove(wake)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def release(self) -> None:
        self._release()

    def _release(self) -> None:
        if self._waiters:
            self._waiters.pop(0).set()  # the next waiter owns it now
        else:
            self._held = False
