"""Critical sections: while any is open, proactive disconnects wait (SPEC: you decide *when*).

``async with ws.critical():`` may nest and be used from many tasks; it only counts. A proactive
disconnect (should_disconnect, request_disconnect, rotation, max_connection_age) calls
:meth:`CriticalSections.wait_until_clear` first, bounded by ``max_defer``. Reactive disconnects
cannot be prevented; the manager reports whether one hit an open critical section.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.lowlevel import checkpoint

__all__ = ["CriticalSections"]


class CriticalSections:
    __slots__ = ("_clear", "_open")

    def __init__(self) -> None:
        self._open = 0
        # Created when the first section opens (an Event needs a running event loop; the
        # manager may be built before one runs).
        self._clear: anyio.Event | None = None

    @property
    def active(self) -> bool:
        return self._open > 0

    @asynccontextmanager
    async def section(self) -> AsyncIterator[None]:
        await checkpoint()
        if self._open == 0:
            self._clear = anyio.Event()
        self._open += 1
        try:
            yield
        finally:
            self._open -= 1
            if self._open == 0 and self._clear is not None:
                self._clear.set()

    async def wait_until_clear(self, max_defer: float | None) -> tuple[float, bool] | None:
        """Wait until no section is open. None if none was; else (seconds waited, forced) where
        ``forced`` means ``max_defer`` ran out first."""
        if self._open == 0:
            return None
        start = anyio.current_time()
        with anyio.move_on_after(max_defer):
            # Again while a section opened before we ran: the event we woke on is then stale.
            while self._open > 0 and self._clear is not None:
                await self._clear.wait()
        return anyio.current_time() - start, self._open > 0
