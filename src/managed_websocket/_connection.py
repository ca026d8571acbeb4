"""One open client WebSocket connection: wsproto over an anyio byte stream.

Theory of operation. Nothing runs in the background: whoever calls :meth:`receive_batch` (or
:meth:`receive`, or :meth:`ping` when nobody else is reading) reads the socket, feeds wsproto and
handles every event in one place, :meth:`_handle_events`. wsproto answers nothing by itself, so
this module sends the pong for each ping and the close frame for each close (RFC 6455 5.5.1,
5.5.2). Complete messages queue up in ``_pending``; one socket read can complete many messages and
the caller gets them all at once, which keeps the per-message cost low.

Once the connection has ended, ``_error`` holds the exception that explains why; messages that
arrived before it are still handed out first, then every receive raises it.

Opening a connection (TCP, TLS, the HTTP upgrade) lives in ``_handshake.py``.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from typing import cast

import anyio
import anyio.abc
from wsproto import WSConnection
from wsproto.connection import ConnectionState as ProtocolState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    TextMessage,
)

from ._exceptions import (
    WebSocketAbnormalClosureError,
    WebSocketClosedError,
    WebSocketError,
    WebSocketMessageTooBigError,
    WebSocketProtocolError,
)
from ._url import WebSocketURL

__all__ = ["DEFAULT_READ_SIZE", "WebSocketConnection"]

#: Bytes asked of the socket per read. anyio's default (64 KiB) is several times slower for bulk
#: data on asyncio, whose larger reads get cut into copied pieces.
DEFAULT_READ_SIZE = 262_144

# Errors that mean "the socket is gone" when reading or writing.
_STREAM_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)

Data = str | bytes


class _PongWaiter:
    __slots__ = ("answered", "wake")

    def __init__(self) -> None:
        self.answered = False
        self.wake = anyio.Event()


class WebSocketConnection:
    """An open client WebSocket connection.

    Create it with :func:`connect_websocket` (an async context manager) or
    :func:`open_websocket_connection`. Safe to use from several tasks: sends are serialized,
    and one task at a time reads.
    """

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        protocol: WSConnection,
        *,
        url: WebSocketURL,
        subprotocol: str | None,
        response_headers: Sequence[tuple[str, str]],
        max_message_size: int,
        close_timeout: float,
        read_size: int = DEFAULT_READ_SIZE,
    ) -> None:
        self._stream = stream
        self._proto = protocol
        self._url = url
        self._subprotocol = subprotocol
        self._response_headers = list(response_headers)
        self._max_message_size = max_message_size
        self._close_timeout = close_timeout
        self._read_size = read_size
        self._pending: deque[Data] = deque()
        self._fragments: list[Data] = []
        self._fragments_size = 0
        self._error: WebSocketError | None = None
        self._socket_closed = False
        self._failing = False  # we sent a close frame because the peer misbehaved
        self._draining = False
        self._send_lock = anyio.Lock()
        self._read_lock = anyio.Lock()
        # Per payload, in the order the pings were sent: two tasks may ping with the same payload.
        self._pong_waiters: dict[bytes, list[_PongWaiter]] = {}
        self._ping_ids = itertools.count(1)
        self._close_code: int | None = None
        self._close_reason = ""
        self.bytes_received = 0
        self.bytes_sent = 0

    def __repr__(self) -> str:
        state = "open" if self.is_open else f"closed code={self._close_code}"
        return f"<WebSocketConnection {self._url} {state}>"

    # Public properties

    @property
    def url(self) -> WebSocketURL:
        return self._url

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose, or None."""
        return self._subprotocol

    @property
    def response_headers(self) -> list[tuple[str, str]]:
        """The headers of the server's 101 response, names lower-cased."""
        return list(self._response_headers)

    @property
    def is_open(self) -> bool:
        """True until the connection has ended for any reason."""
        return self._error is None

    @property
    def close_code(self) -> int | None:
        """The close code once closed: the peer's, ours, or 1006 for a lost connection."""
        return self._close_code

    @property
    def close_reason(self) -> str:
        return self._close_reason

    @property
    def closed_error(self) -> WebSocketError | None:
        """Why the connection ended (None while open)."""
        return self._error

    # Receiving

    async def receive(self) -> Data:
        """Return the next whole message: ``str`` for text, ``bytes`` for binary.

        Raises:
            WebSocketClosedError: the connection closed (after every earlier message was returned);
                :class:`WebSocketAbnormalClosureError` when it ended without a close frame.
            WebSocketProtocolError: the peer broke the protocol; we closed with 1002/1007/1009.
        """
        if not self._pending:
            await self._fill()
        return self._pending.popleft()

    async def receive_batch(self) -> list[Data]:
        """Return every message available now (at least one), in order. Raises like receive()."""
        if not self._pending:
            await self._fill()
        batch = list(self._pending)
        self._pending.clear()
        return batch

    async def _fill(self) -> None:
        while not self._pending:
            if self._error is not None:
                raise self._error
            try:
                async with self._read_lock:
                    if not self._pending and self._error is None:
                        await self._read_chunk()
            finally:
                # Pingers waiting for a reader must learn that it stopped, even if cancelled.
                self._wake_pingers()

    # Sending

    async def send(self, data: Data) -> None:
        """Send one message: ``str`` as a text frame, ``bytes`` as a binary frame.

        Raises:
            TypeError: ``data`` is neither str nor bytes-like.
            WebSocketClosedError: the connection is closed or closing.
        """
        if isinstance(data, str):
            event: Event = TextMessage(data=data)
        elif isinstance(data, bytes | bytearray | memoryview):
            event = BytesMessage(data=bytes(data))
        else:
            raise TypeError(f"can only send str or bytes, not {type(data).__name__}")
        await self._send_event(event)

    async def ping(self, payload: bytes | None = None) -> float:
        """Send a ping and return the round-trip time in seconds once its pong arrives.

        If no other task is reading, this reads the connection itself (messages that arrive
        meanwhile are kept for the next receive). Bound it with ``anyio.fail_after``.
        """
        if payload is None:
            payload = next(self._ping_ids).to_bytes(8, "big")
        waiter = _PongWaiter()
        waiters = self._pong_waiters.setdefault(payload, [])
        waiters.append(waiter)
        start = anyio.current_time()
        try:
            await self._send_event(Ping(payload=payload))
            while not waiter.answered:
                if self._error is not None:
                    raise self._error
                waiter.wake = anyio.Event()
                if self._read_lock.locked():
                    # The reader wakes us when the pong comes, or when it stops reading.
                    await waiter.wake.wait()
                else:
                    try:
                        async with self._read_lock:
                            await self._read_chunk()
                    finally:
                        self._wake_pingers()  # other pingers may wait for us to stop reading
        finally:
            waiters.remove(waiter)
            if not waiters:
                del self._pong_waiters[payload]
        return anyio.current_time() - start

    # Closing

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close gracefully: send a close frame, wait up to ``close_timeout`` for the peer's, close
        the socket. Idempotent; the socket is closed even if this is cancelled."""
        try:
            if self._proto.state is ProtocolState.OPEN and not self._socket_closed:
                await self._send_event(CloseConnection(code=code, reason=reason))
                self._set_error(WebSocketClosedError("connection closed by us", code=code))
            await self._await_peer_close()
        except WebSocketError:
            pass
        finally:
            await self._close_socket()

    async def abort(self) -> None:
        """Close the TCP connection at once, without a close frame."""
        self._set_error(WebSocketAbnormalClosureError("connection aborted locally"))
        await self._close_socket()

    async def _await_peer_close(self) -> None:
        with anyio.move_on_after(self._close_timeout):
            async with self._read_lock:
                while self._awaiting_peer_close():
                    await self._read_chunk()

    async def _close_socket(self) -> None:
        if not self._socket_closed:
            self._socket_closed = True
            await anyio.aclose_forcefully(self._stream)
        self._wake_pingers()

    # The read path: one chunk from the socket, every event it completes.

    async def _read_chunk(self) -> None:
        if self._socket_closed:
            self._set_error(WebSocketAbnormalClosureError())
            return
        data: bytes | None
        try:
            data = await self._stream.receive(self._read_size)
        except anyio.EndOfStream:
            data = None
        except _STREAM_GONE:
            data = None
        if self._proto.state is ProtocolState.CLOSED:
            await self._close_socket()  # the close handshake is complete; nothing more to read
            return
        if data is not None:
            self.bytes_received += len(data)
        self._proto.receive_data(data)
        await self._handle_events()

    async def _handle_events(self) -> None:
        outgoing = bytearray()
        for event in self._proto.events():
            if isinstance(event, TextMessage | BytesMessage):
                if self._error is None:
                    outgoing += self._handle_message(event)
            elif isinstance(event, Ping):
                if self._proto.state is ProtocolState.OPEN:
                    outgoing += self._proto.send(event.response())
            elif isinstance(event, Pong):
                self._handle_pong(event.payload)
            elif isinstance(event, CloseConnection):
                outgoing += self._handle_close(event)
        if outgoing:
            await self._write(bytes(outgoing))
        if self._proto.state is ProtocolState.CLOSED:
            await self._close_socket()
        elif self._failing and not self._draining:
            # We failed the connection (protocol error, too big): give the peer close_timeout to
            # answer our close frame, then drop the socket (RFC 6455 7.1.1).
            self._draining = True
            with anyio.move_on_after(self._close_timeout):
                while self._awaiting_peer_close():
                    await self._read_chunk()
            await self._close_socket()

    def _awaiting_peer_close(self) -> bool:
        return not self._socket_closed and self._proto.state is not ProtocolState.CLOSED

    def _handle_message(self, event: TextMessage | BytesMessage) -> bytes:
        data = event.data
        self._fragments.append(bytes(data) if isinstance(data, bytearray) else data)
        self._fragments_size += len(data)
        if self._fragments_size > self._max_message_size:
            self._fragments.clear()
            return self._fail(WebSocketMessageTooBigError(self._max_message_size))
        if event.message_finished:
            parts = self._fragments
            message: Data
            if len(parts) == 1:
                message = parts[0]
            elif isinstance(parts[0], str):
                message = "".join(cast("list[str]", parts))
            else:
                message = b"".join(cast("list[bytes]", parts))
            self._pending.append(message)
            self._fragments = []
            self._fragments_size = 0
        return b""

    def _handle_pong(self, payload: bytes) -> None:
        for waiter in self._pong_waiters.get(bytes(payload), ()):
            if not waiter.answered:  # the oldest ping with this payload
                waiter.answered = True
                waiter.wake.set()
                break

    def _handle_close(self, event: CloseConnection) -> bytes:
        state = self._proto.state
        if state is ProtocolState.REMOTE_CLOSING:
            # The peer started the close handshake: answer with its code (RFC 6455 5.5.1).
            self._set_error(
                WebSocketClosedError(
                    "connection closed by the server", code=event.code, reason=event.reason or ""
                )
            )
            return self._proto.send(event.response())
        if state is ProtocolState.OPEN:
            # wsproto found a violation (bad UTF-8, reserved bits, ...) and tells us which close
            # code to fail the connection with; it leaves sending it to us.
            return self._fail(
                WebSocketProtocolError(event.reason or "protocol error", code=event.code)
            )
        if event.code == 1006:
            self._set_error(WebSocketAbnormalClosureError())
        else:
            # The peer answered our close frame.
            self._set_error(
                WebSocketClosedError(
                    "connection closed", code=event.code, reason=event.reason or ""
                )
            )
        return b""

    def _fail(self, error: WebSocketProtocolError) -> bytes:
        self._set_error(error)
        self._failing = True
        if self._proto.state is ProtocolState.OPEN:
            return self._proto.send(CloseConnection(code=error.code))
        return b""

    def _set_error(self, error: WebSocketError) -> None:
        if self._error is None:
            self._error = error
            if isinstance(error, WebSocketClosedError | WebSocketProtocolError):
                self._close_code = error.code
            if isinstance(error, WebSocketClosedError):
                self._close_reason = error.reason
        self._wake_pingers()

    def _wake_pingers(self) -> None:
        for waiters in self._pong_waiters.values():
            for waiter in waiters:
                waiter.wake.set()

    # The write path: one lock, one place that maps errors.

    async def _send_event(self, event: Event) -> None:
        async with self._send_lock:
            if self._error is not None or self._proto.state is not ProtocolState.OPEN:
                raise self._closed_for_sending()
            await self._write_locked(self._proto.send(event))

    async def _write(self, data: bytes) -> None:
        async with self._send_lock:
            await self._write_locked(data)

    async def _write_locked(self, data: bytes) -> None:
        if self._socket_closed:
            raise self._closed_for_sending()
        try:
            await self._stream.send(data)
        except _STREAM_GONE:
            self._set_error(WebSocketAbnormalClosureError())
            raise self._closed_for_sending() from None
        self.bytes_sent += len(data)

    def _closed_for_sending(self) -> WebSocketClosedError:
        if isinstance(self._error, WebSocketClosedError):
            return self._error
        return WebSocketClosedError("connection is closed", code=self._close_code or 1006)
