"""Helpers for the reconnect tests: when each connection reached the test server, and what the
manager reported about its disconnects.

The test server's ``on_handshake`` hook only runs for connections it serves normally, not for the
ones it refuses or flaps, so arrival times are taken at TCP accept instead: a watcher task waits
with ``server.wait_for_connections(n)`` and stamps each new connection with
``anyio.current_time()`` (the virtual clock under trio's ``MockClock``). The watcher also checks,
at every accept, that no earlier connection is still open on the server.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc

from managed_websocket import DisconnectReason, ManagedWebSocket
from managed_websocket.testing import WebSocketTestServer


class AcceptLog:
    """``times[i]``: when ``server.clients[i]`` was accepted; ``max_live``: the most connections
    open on the server at any accept (the new one included)."""

    def __init__(self, server: WebSocketTestServer) -> None:
        self.server = server
        self.times: list[float] = []
        self.max_live = 0
        self._recorded = anyio.Event()

    async def _watch(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        task_status.started()
        while True:
            await self.server.wait_for_connections(len(self.times) + 1)
            now = anyio.current_time()
            clients = self.server.clients
            self.times.extend([now] * (len(clients) - len(self.times)))
            self.max_live = max(self.max_live, len(self.server.live_clients))
            self._recorded.set()
            self._recorded = anyio.Event()

    async def wait_for(self, n: int) -> None:
        """Wait until ``n`` connections have been accepted *and* stamped."""
        while len(self.times) < n:
            await self._recorded.wait()

    def gaps(self, since: float, first: int) -> list[float]:
        """Intervals from ``since`` to the accept of ``server.clients[first]``, then between
        each later accept and the one before it."""
        points = [since, *self.times[first:]]
        return [b - a for a, b in itertools.pairwise(points)]


@asynccontextmanager
async def accept_log(server: WebSocketTestServer) -> AsyncIterator[AcceptLog]:
    """Run an :class:`AcceptLog` watcher for the duration of the block.

    The block's own exception is re-raised as itself, not wrapped in an ExceptionGroup.
    """
    log = AcceptLog(server)
    error: BaseException | None = None
    async with anyio.create_task_group() as tg:
        await tg.start(log._watch)
        try:
            yield log
        except BaseException as exc:  # noqa: BLE001 - re-raised below, outside the task group
            error = exc
        tg.cancel_scope.cancel()
    if error is not None:
        raise error


class DisconnectLog:
    """An ``on_disconnect`` callback that remembers every reason it was called with."""

    def __init__(self) -> None:
        self.reasons: list[DisconnectReason] = []

    def __call__(self, reason: DisconnectReason) -> None:
        self.reasons.append(reason)


def sub(channel: str) -> dict[str, str]:
    """The default subscription protocol's subscribe message (SPEC section 2)."""
    return {"type": "subscribe", "channel": channel}


def decoded(messages: list[str | bytes]) -> list[Any]:
    """A server record's text messages, JSON-decoded."""
    return [json.loads(m) for m in messages]


async def run_until_it_fails(
    ws: ManagedWebSocket, break_server: Callable[[], Awaitable[object]]
) -> None:
    """Open ``ws``, run ``break_server()``, then wait in the block until the manager fails
    (the failure leaves the ``async with`` block, which re-raises it)."""
    async with ws:
        await break_server()
        await anyio.sleep_forever()
