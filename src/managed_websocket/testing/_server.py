"""The scripted WebSocket server that tests drive while it runs.

The server owns one task group: an accept loop per listening socket, and one task per accepted
connection (:mod:`._connection`). Leaving the ``async with`` block cancels them all and closes
every socket. Faults for *future* connections live in a :class:`._faults.FaultSchedule`; faults for
*current* connections are methods that act on live clients at once.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup
from anyio.streams.stapled import MultiListener

from ._connection import (
    CLOSE_TIMEOUT,
    AuthorizeHook,
    ConnectionConfig,
    HandshakeHook,
    MessageHook,
    ServerConnection,
)
from ._faults import FaultSchedule, Flap, Refuse, Stall
from ._records import ClientRecord, Notifier

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["WebSocketTestServer", "open_test_server"]


def open_test_server(
    *,
    echo: bool = True,
    subprotocols: Sequence[str] = (),
    host: str = "127.0.0.1",
    ssl_context: ssl.SSLContext | None = None,
    response_headers: Sequence[tuple[str, str]] = (),
    compression: bool = False,
) -> WebSocketTestServer:
    """Create a scripted WebSocket server; use it with ``async with``.

    The server listens on an ephemeral port of ``host`` once the ``async with`` block is entered
    and stops, closing every connection, when the block exits::

        async with open_test_server(subprotocols=["v2"]) as server:
            ...  # connect to server.url, then inspect server.clients

    Args:
        echo: Send every data message back to the client that sent it.
        subprotocols: Subprotocols the server supports; it picks the first one the client offers
            that is in this list.
        host: The address to listen on. Use an IP literal: the URL is built from it.
        ssl_context: Serve ``wss://`` with this server-side TLS context.
        response_headers: Extra headers for every 101 response.
        compression: Accept permessage-deflate when the client offers it (wsproto's
            implementation); by default the server declines it and all frames are plain.

    Returns:
        The server, not yet listening.
    """
    return WebSocketTestServer(
        echo=echo,
        subprotocols=subprotocols,
        host=host,
        ssl_context=ssl_context,
        response_headers=response_headers,
        compression=compression,
    )


class WebSocketTestServer:
    """A WebSocket server for tests, with faults a test can trigger while it runs.

    Create it with :func:`open_test_server`. Methods that take ``client`` act on that one client;
    with ``client=None`` they act on every live client. They never raise because a client has
    gone away: a vanished client is simply skipped.
    """

    def __init__(
        self,
        *,
        echo: bool = True,
        subprotocols: Sequence[str] = (),
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
        response_headers: Sequence[tuple[str, str]] = (),
        compression: bool = False,
    ) -> None:
        self._echo = echo
        self._compression = compression
        self._subprotocols = tuple(subprotocols)
        self._host = host
        self._ssl_context = ssl_context
        self._response_headers = tuple(response_headers)
        self._hook: HandshakeHook | None = None
        self._message_hook: MessageHook | None = None
        self._authorize: AuthorizeHook | None = None
        self._faults = FaultSchedule()
        self._notifier = Notifier()
        self._connections: list[ServerConnection] = []
        self._listener: MultiListener[SocketStream] | None = None
        self._task_group: TaskGroup | None = None
        self._port: int | None = None

    # -- Lifetime -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._listener is not None:
            raise RuntimeError("a WebSocketTestServer can only be started once")
        self._listener = await anyio.create_tcp_listener(local_host=self._host, local_port=0)
        self._port = self._listener.extra(SocketAttribute.local_port)
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        for listener in self._listener.listeners:
            if not isinstance(listener, SocketListener):  # pragma: no cover - anyio guarantees it
                raise TypeError(f"unexpected listener {listener!r}")
            self._task_group.start_soon(self._accept_loop, listener)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # The block's own exception is not handed to the task group, so a failing assertion in a
        # test comes out as itself rather than wrapped in an ExceptionGroup.
        assert self._task_group is not None
        assert self._listener is not None
        self._task_group.cancel_scope.cancel()
        try:
            await self._task_group.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._listener.aclose()

    async def _accept_loop(self, listener: SocketListener) -> None:
        while True:
            stream = await listener.accept()
            # Record and fault are fixed here, in accept order, not when the task first runs.
            record = ClientRecord(len(self._connections), self._notifier)
            config = ConnectionConfig(
                echo=self._echo,
                subprotocols=self._subprotocols,
                response_headers=self._response_headers,
                ssl_context=self._ssl_context,
                on_handshake=self._hook,
                on_message=self._message_hook,
                authorize=self._authorize,
                compression=self._compression,
            )
            connection = ServerConnection(stream, record, config, self._faults.next_fault())
            self._connections.append(connection)
            self._notifier.notify()
            assert self._task_group is not None
            self._task_group.start_soon(connection.run)

    # -- What the server saw --------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the server listens on.

        Raises:
            RuntimeError: If the server has not been started.
        """
        if self._port is None:
            raise RuntimeError("the server is not running; use `async with open_test_server()`")
        return self._port

    @property
    def url(self) -> str:
        """``ws://host:port`` (``wss://`` with TLS), without a path.

        Raises:
            RuntimeError: If the server has not been started.
        """
        scheme = "ws" if self._ssl_context is None else "wss"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self.port}"

    @property
    def clients(self) -> list[ClientRecord]:
        """Every connection accepted at TCP level, in accept order."""
        return [connection.record for connection in self._connections]

    @property
    def live_clients(self) -> list[ClientRecord]:
        """The connections whose socket is still open."""
        return [record for record in self.clients if not record.closed]

    async def wait_for_connections(self, n: int) -> None:
        """Wait until ``n`` TCP connections have been accepted in total."""
        await self._notifier.wait_for(lambda: len(self._connections) >= n)

    async def wait_for_handshakes(self, n: int) -> None:
        """Wait until ``n`` WebSocket upgrades have completed in total.

        An upgrade counts once the 101 response is sent and the ``on_handshake`` hook returned.
        """
        await self._notifier.wait_for(
            lambda: sum(record.handshake_completed for record in self.clients) >= n
        )

    async def wait_for_messages(self, n: int, client: ClientRecord | None = None) -> None:
        """Wait until ``n`` data messages have been received, from ``client`` or from all.

        Raises:
            RuntimeError: If ``client`` is given and it closes with fewer than ``n`` messages.
            ValueError: If ``client`` is not a client of this server.
        """
        if client is not None:
            await self._connection_for(client).record.wait_messages(n)
            return
        await self._notifier.wait_for(
            lambda: sum(len(record.messages) for record in self.clients) >= n
        )

    # -- Talking to clients ---------------------------------------------------------------------

    async def send(self, client: ClientRecord, message: str | bytes) -> bool:
        """Send one data message to one client.

        Returns:
            Whether it was written: ``False`` if the client's WebSocket is not open (not upgraded
            yet, closing, closed or silenced).

        Raises:
            ValueError: If ``client`` is not a client of this server.
        """
        return await self._connection_for(client).send_message(message)

    async def broadcast(self, message: str | bytes) -> int:
        """Send one data message to every client whose WebSocket is open.

        Returns:
            How many clients it was written to.
        """
        sent = 0
        for connection in list(self._connections):
            if connection.is_open:
                sent += await connection.send_message(message)
        return sent

    async def send_raw(self, data: bytes, client: ClientRecord | None = None) -> int:
        """Write raw bytes on the connection (inside TLS for ``wss://``), e.g. a malformed frame.

        The bytes bypass wsproto, so they work before, during and after the upgrade, and the
        server's protocol state does not see them: after a raw close frame, the client's answer
        looks like a client-initiated close (``ended_by == "client_close"``). Silenced and closed
        connections are skipped.

        Args:
            data: The bytes to write.
            client: The client to write to, or ``None`` for every live client.

        Returns:
            How many clients they were written to.
        """
        sent = 0
        for connection in self._targets(client):
            sent += await connection.send_raw(data)
        return sent

    def raw_writer(
        self, client: ClientRecord
    ) -> AbstractAsyncContextManager[Callable[[bytes], Awaitable[bool]]]:
        """Write raw bytes to ``client`` with nothing else in between::

            async with server.raw_writer(client) as write:
                for chunk in chunks:  # e.g. one frame split at odd offsets
                    await write(chunk)

        While the block runs, every other write to that client (the answers to its pings,
        echoes, broadcasts, close frames) waits, so a frame split over several writes is not
        cut by a pong. ``write`` returns whether the bytes were written, like :meth:`send_raw`.
        Do not call other methods that write to ``client`` inside the block: they would wait
        for it to end.

        Raises:
            ValueError: If ``client`` is not a client of this server.
        """
        return self._connection_for(client).raw_writer()

    # -- Faults for live connections ------------------------------------------------------------

    async def close_clients(
        self,
        code: int = 1000,
        reason: str = "",
        client: ClientRecord | None = None,
        *,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        """Close WebSocket connections cleanly from the server side.

        Sends a close frame, waits up to ``close_timeout`` seconds for the client's close frame,
        then closes TCP (the server closes first, as RFC 6455 section 7.1.1 asks), and returns
        once the sockets are closed. A connection that is not upgraded yet is closed without a
        close frame; a silenced one gets the close frame but no wait.

        Args:
            code: The close code to send.
            reason: The close reason to send.
            client: The client to close, or ``None`` for every live client.
            close_timeout: How long to wait for each client's answer.
        """
        async with anyio.create_task_group() as task_group:
            for connection in self._targets(client):
                task_group.start_soon(connection.close, code, reason, close_timeout)

    async def drop_clients(self, client: ClientRecord | None = None) -> None:
        """Close TCP (FIN) without a close frame, and wait until the sockets are closed."""
        await self._abort(client, reset=False)

    async def reset_clients(self, client: ClientRecord | None = None) -> None:
        """Reset TCP (RST, via ``SO_LINGER`` 0), and wait until the sockets are closed."""
        await self._abort(client, reset=True)

    def silence_clients(self, client: ClientRecord | None = None) -> None:
        """Make connections half-open: stop reading and writing, but keep the sockets open.

        A silenced client gets no pongs, no echoes and no broadcasts. Its socket stays open until
        :meth:`drop_clients`, :meth:`reset_clients` or :meth:`close_clients` is called for it, or
        the server exits.
        """
        for connection in self._targets(client):
            connection.silence()

    # -- Faults for future connections ----------------------------------------------------------

    def refuse_handshakes(
        self,
        status: int,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        count: int | None = 1,
    ) -> None:
        """Answer the next ``count`` upgrade requests with an HTTP error instead of 101.

        Faults for future connections queue up in the order they are scheduled; ``count=None``
        repeats this one until :meth:`clear_faults`.

        Args:
            status: The HTTP status, 200 to 599.
            headers: Response headers, e.g. ``[("Retry-After", "5")]``.
            body: Response body (a ``Content-Length`` header is added for it).
            count: How many connections to refuse, or ``None`` for all until cleared.

        Raises:
            ValueError: If ``status`` or ``count`` is out of range.
        """
        if not 200 <= status <= 599:
            raise ValueError(f"status must be between 200 and 599, not {status}")
        self._faults.add(Refuse(status, tuple(headers), body), count)

    def flap(self, count: int | None = 1, code: int | None = 1000) -> None:
        """Accept the next ``count`` upgrades, then close each at once.

        Args:
            count: How many connections to flap, or ``None`` for all until cleared.
            code: The close code to send, or ``None`` to drop TCP without a close frame.

        Raises:
            ValueError: If ``count`` is out of range.
        """
        self._faults.add(Flap(code), count)

    def stall_handshakes(self, count: int | None = 1) -> None:
        """Accept TCP and read the upgrade request on the next ``count`` connections, then never
        answer.

        Raises:
            ValueError: If ``count`` is out of range.
        """
        self._faults.add(Stall(), count)

    def clear_faults(self) -> None:
        """Serve future connections normally again."""
        self._faults.clear()

    def on_handshake(self, callback: HandshakeHook | None) -> None:
        """Run ``callback(record)`` after each future upgrade, before reading client messages.

        The callback may be sync or async; it can greet the client with :meth:`send`. Pass
        ``None`` to remove it. Exceptions it raises are bugs and fail the server.
        """
        self._hook = callback

    def on_message(self, callback: MessageHook | None) -> None:
        """Run ``callback(record, message)`` for each data message a future client sends, after
        it is recorded and before it is echoed: a scripted exchange answers requests here.

        The callback may be sync or async and runs in that client's read loop, so a slow one
        delays reading (as a busy server would). Pass ``None`` to remove it. Exceptions it
        raises are bugs and fail the server.
        """
        self._message_hook = callback

    def authorize(self, check: AuthorizeHook | None) -> None:
        """Judge each future upgrade request with ``check(record)`` before answering it.

        ``record.path`` and ``record.request_headers`` are set. True (or None) accepts, False
        refuses with HTTP 401, an int refuses with that status (e.g. 403). Sync or async. A
        scheduled fault (:meth:`refuse_handshakes` and the like) comes first.
        """
        self._authorize = check

    # -- Helpers --------------------------------------------------------------------------------

    def _connection_for(self, client: ClientRecord) -> ServerConnection:
        index = client.index
        if 0 <= index < len(self._connections) and self._connections[index].record is client:
            return self._connections[index]
        raise ValueError(f"{client!r} is not a client of this server")

    def _targets(self, client: ClientRecord | None) -> list[ServerConnection]:
        if client is None:
            return [c for c in self._connections if not c.record.closed]
        connection = self._connection_for(client)
        return [] if connection.record.closed else [connection]

    async def _abort(self, client: ClientRecord | None, *, reset: bool) -> None:
        targets = self._targets(client)
        for connection in targets:
            connection.abort("server_reset" if reset else "server_drop", reset=reset)
        for connection in targets:
            await connection.record.wait_closed()
