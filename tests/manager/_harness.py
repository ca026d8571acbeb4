"""Helpers for the manager tests that run against the real testing server.

Shared by test_proactive, test_lifecycle, test_delivery and test_stats_and_config. Every wait in
those tests is bounded by :data:`WAIT` (``anyio.fail_after``); the delays the manager is given are
tiny (explicit keywords are not clamped), so a test normally takes a fraction of a second.
"""

from __future__ import annotations

import itertools
import json
import struct
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel

from managed_websocket import ManagedWebSocket
from managed_websocket.testing import WebSocketTestServer

__all__ = [
    "EPS",
    "FAST",
    "WAIT",
    "Recorder",
    "as_kind",
    "gaps",
    "manager",
    "our_tasks",
    "server_frame",
    "wait_until",
]

#: Upper bound for any wait; the waits themselves normally take milliseconds.
WAIT = 5.0

#: Slack for lower bounds measured on the event loop's clock (timer granularity only).
EPS = 0.005

#: Options that make every reconnect delay tiny and exact (no jitter).
FAST: dict[str, Any] = {
    "reconnect_delay": 0.01,
    "max_reconnect_delay": 0.05,
    "reconnect_jitter": 0.0,
    "connection_timeout": 2.0,
    "close_timeout": 1.0,
}


def manager(server: WebSocketTestServer, path: str = "/ws", **options: Any) -> ManagedWebSocket:
    """A manager for ``server`` with :data:`FAST` delays, overridden by ``options``."""
    return ManagedWebSocket(server.url + path, **{**FAST, **options})


class Recorder:
    """A callback that records each call as ``(time, args)`` and returns ``result(n)``.

    ``result`` gets the 1-based number of the call. ``wait(n)`` waits until ``n`` calls happened.
    """

    def __init__(self, result: Callable[[int], Any] = lambda n: None) -> None:
        self.calls: list[tuple[float, tuple[Any, ...]]] = []
        self._result = result
        self._changed: anyio.Event | None = None

    def __call__(self, *args: Any) -> Any:
        self.calls.append((anyio.current_time(), args))
        if self._changed is not None:
            self._changed.set()
        return self._result(len(self.calls))

    def __len__(self) -> int:
        return len(self.calls)

    @property
    def args(self) -> list[tuple[Any, ...]]:
        return [args for _, args in self.calls]

    @property
    def times(self) -> list[float]:
        return [at for at, _ in self.calls]

    async def wait(self, n: int) -> None:
        while len(self.calls) < n:
            self._changed = anyio.Event()
            await self._changed.wait()


def server_frame(text: str) -> bytes:
    """An unmasked text frame, as a server sends it (for ``server.send_raw``)."""
    payload = text.encode()
    length = len(payload)
    if length < 126:
        header = bytes([0x81, length])
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


def as_kind(kind: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` itself (``"sync"``), or an async function that yields, then calls it."""
    if kind == "sync":
        return function
    assert kind == "async"

    async def wrapper(*args: Any) -> Any:
        await anyio.lowlevel.checkpoint()  # really suspends: unless awaited, it returns nothing
        return function(*args)

    return wrapper


async def wait_until(predicate: Callable[[], bool], interval: float = 0.005) -> None:
    """Poll ``predicate`` (for conditions nothing signals); bound it with ``fail_after``."""
    while not predicate():  # noqa: ASYNC110 - nothing signals these conditions
        await anyio.sleep(interval)


def gaps(times: list[float]) -> list[float]:
    """The intervals between consecutive times."""
    return [b - a for a, b in itertools.pairwise(times)]


def our_tasks(backend: str) -> set[Any]:
    """On asyncio: the running tasks of the library (the testing server excluded); else empty.

    On trio the nursery structure already guarantees it: ``async with`` cannot exit while a child
    task runs.
    """
    if backend != "asyncio":
        return set()
    import asyncio

    return {
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("managed_websocket.")
        and not task.get_name().startswith("managed_websocket.testing")
    }


class Feed:
    """Broadcasts ``{"seq": n}`` (n = 0, 1, 2, ...) every ``interval`` seconds."""

    def __init__(self, server: WebSocketTestServer, interval: float = 0.001) -> None:
        self.server = server
        self.interval = interval
        self.next = 0
        self.last_written = -1  # the last seq that was written to at least one client
        self._stop = anyio.Event()
        self._stopped = anyio.Event()

    @property
    def last(self) -> int:
        """The last seq that reached a client. (One broadcast while the client was away
        reaches nobody: a test that waited for it would wait forever.)"""
        return self.last_written

    async def run(self) -> None:
        try:
            while not self._stop.is_set():
                if await self.server.broadcast(json.dumps({"seq": self.next})):
                    self.last_written = self.next
                self.next += 1
                await anyio.sleep(self.interval)
        finally:
            self._stopped.set()

    async def stop(self) -> int:
        """Stop broadcasting; return the last seq that was written to a client."""
        self._stop.set()
        await self._stopped.wait()
        return self.last
