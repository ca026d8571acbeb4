"""What the test server remembers about each connection, and how tests wait for it.

Every accepted TCP connection gets one :class:`ClientRecord`. The connection task is its only
writer (through the underscore methods); tests read the attributes and wait with the ``wait_*``
methods. All records of one server share one :class:`Notifier`, so a single "something changed"
signal wakes every waiter, which then re-checks its own condition. That is plenty for a test server
with a handful of clients, and it keeps waiting free of polling and sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import anyio

__all__ = ["ClientRecord", "EndedBy", "Notifier"]

#: Why a connection ended. The first cause recorded wins: a stalled handshake that is later
#: dropped stays ``"stalled"``.
#:
#: - ``"client_close"``: the client sent a close frame first.
#: - ``"client_eof"``: the client closed or reset TCP without a close frame.
#: - ``"server_close"``: the server sent a close frame first (``close_clients``, ``flap``, or a
#:   protocol violation by the client).
#: - ``"server_drop"``: the server closed TCP without a close frame (``drop_clients``, ``flap``
#:   with ``code=None``, or the server exiting).
#: - ``"server_reset"``: the server reset TCP (``reset_clients``).
#: - ``"refused"``: the server answered the upgrade with an HTTP error status.
#: - ``"stalled"``: the server read the upgrade request and never answered it.
EndedBy = Literal[
    "client_close",
    "client_eof",
    "server_close",
    "server_drop",
    "server_reset",
    "refused",
    "stalled",
]


class Notifier:
    """A broadcast "something changed" signal; waiters re-check their own condition."""

    def __init__(self) -> None:
        # Created lazily: anyio.Event() needs a running event loop.
        self._event: anyio.Event | None = None

    def notify(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()


class ClientRecord:
    """Everything the test server saw on one accepted TCP connection.

    The server creates one record per connection, in accept order, and updates it while the
    connection runs. Treat the attributes as read-only.

    Attributes:
        index: Position of this connection in :attr:`WebSocketTestServer.clients` (0-based).
        path: The request target of the upgrade request, e.g. ``"/feed?x=1"`` (``""`` until the
            request has been read).
        request_headers: The upgrade request's headers in order, names lower-cased.
        subprotocol: The subprotocol the server chose, or ``None``.
        handshake_completed: ``True`` once the server has sent its 101 response and the
            ``on_handshake`` hook, if any, has returned.
        messages: Every complete data message received from the client, in order.
        pings_received: How many pings the client sent.
        close_code: The code from the client's close frame (1005 if the frame had no code), or
            ``None`` if the client sent no close frame.
        close_reason: The reason from the client's close frame (``""`` if none).
        closed: ``True`` once the socket is closed, by either side.
        ended_by: Why the connection ended (see :data:`EndedBy`), or ``None`` while nothing has
            decided its fate yet. It can be set before :attr:`closed` becomes ``True``: a
            stalled connection is ``"stalled"`` from the moment its request is read.
    """

    def __init__(self, index: int, notifier: Notifier) -> None:
        self.index = index
        self.path = ""
        self.request_headers: list[tuple[str, str]] = []
        self.subprotocol: str | None = None
        self.handshake_completed = False
        self.messages: list[str | bytes] = []
        self.pings_received = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = False
        self.ended_by: EndedBy | None = None
        self._notifier = notifier

    def __repr__(self) -> str:
        return (
            f"<ClientRecord index={self.index} path={self.path!r} "
            f"handshake_completed={self.handshake_completed} messages={len(self.messages)} "
            f"closed={self.closed} ended_by={self.ended_by!r}>"
        )

    def header(self, name: str) -> str | None:
        """Return the first request header called ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        return next((value for key, value in self.request_headers if key == wanted), None)

    async def wait_closed(self) -> None:
        """Wait until the socket is closed, by either side."""
        await self._notifier.wait_for(lambda: self.closed)

    async def wait_messages(self, n: int) -> None:
        """Wait until at least ``n`` data messages have been received from this client.

        Args:
            n: How many messages to wait for, counted from the start of the connection.

        Raises:
            RuntimeError: If the connection closes with fewer than ``n`` messages received (it
                can never get more).
        """
        await self._notifier.wait_for(lambda: len(self.messages) >= n or self.closed)
        if len(self.messages) < n:
            raise RuntimeError(
                f"client {self.index} closed after {len(self.messages)} messages, {n} were awaited"
            )

    # -- Written by the connection task only ------------------------------------------------

    def _end(self, ended_by: EndedBy) -> None:
        if self.ended_by is None:
            self.ended_by = ended_by
            self._notifier.notify()

    def _changed(self) -> None:
        self._notifier.notify()
