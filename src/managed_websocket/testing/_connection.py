"""One connection of the test server: wsproto over an anyio byte stream, plus fault hooks.

Theory of operation. Each accepted socket gets a :class:`ServerConnection` whose :meth:`run` is a
task in the server's task group. ``run`` nests two cancel scopes:

- ``_end_scope`` wraps everything. Cancelling it (``abort``: drop, reset, a failed write) ends the
  connection; the ``finally`` then closes the socket, shielded, and marks the record closed.
- ``_serve_scope`` wraps the protocol work. Cancelling it (``silence``) stops all reading and
  writing but leaves the socket open until ``_end_scope`` is cancelled or the server exits.

Every write goes through :meth:`ServerConnection._send` / ``send_raw``, under one lock, and maps a
vanished client to ``False`` plus ``abort("client_eof")``, so no I/O error ever escapes into the
server's task group. Remember that wsproto does not answer pings or closes by itself: this module
sends ``event.response()`` for both.
"""

from __future__ import annotations

import inspect
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from http import HTTPStatus
from typing import NoReturn

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream
from anyio.streams.tls import TLSStream
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.utilities import RemoteProtocolError

from ._faults import Flap, HandshakeFault, Refuse, Stall
from ._records import ClientRecord, EndedBy

__all__ = [
    "CLOSE_TIMEOUT",
    "AuthorizeHook",
    "ConnectionConfig",
    "HandshakeHook",
    "MessageHook",
    "ServerConnection",
]

#: How long the server waits for the client's half of a closing handshake (its close frame, and
#: over TLS its close_notify) before closing the socket anyway.
CLOSE_TIMEOUT = 1.0

_RECEIVE_SIZE = 65536

#: Everything that means "the client is gone" on read or write. ``ssl.SSLError`` is an OSError.
_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)

_OPEN = (ConnectionState.OPEN,)

HandshakeHook = Callable[[ClientRecord], Awaitable[None] | None]
#: Called with each data message a client sent (after it is recorded, before the echo).
MessageHook = Callable[[ClientRecord, "str | bytes"], Awaitable[None] | None]
#: Judges an upgrade request before it is answered: True (or None) accepts it, False refuses it
#: with 401, an int refuses it with that HTTP status.
AuthorizeHook = Callable[[ClientRecord], "bool | int | None | Awaitable[bool | int | None]"]


@dataclass(frozen=True)
class ConnectionConfig:
    """The server settings one connection runs with, fixed when it is accepted."""

    echo: bool
    subprotocols: tuple[str, ...]
    response_headers: tuple[tuple[str, str], ...]
    ssl_context: ssl.SSLContext | None
    on_handshake: HandshakeHook | None
    on_message: MessageHook | None = None
    authorize: AuthorizeHook | None = None
    compression: bool = False


class ServerConnection:
    """The server side of one accepted TCP connection."""

    def __init__(
        self,
        raw: SocketStream,
        record: ClientRecord,
        config: ConnectionConfig,
        fault: HandshakeFault | None,
    ) -> None:
        self.record = record
        self._raw = raw
        self._stream: ByteStream = raw  # becomes a TLSStream for wss://
        self._config = config
        self._fault = fault
        self._ws = WSConnection(ConnectionType.SERVER)
        self._send_lock = anyio.Lock()
        self._end_scope = anyio.CancelScope()
        self._serve_scope = anyio.CancelScope()
        self._silenced = False
        self._reset = False
        self._closing = False
        self._text: list[str] = []
        self._binary: list[bytes] = []

    @property
    def is_open(self) -> bool:
        """Whether the WebSocket is open and the server still talks on it."""
        return self._ws.state is ConnectionState.OPEN and not self._silenced and not self._closing

    # -- Control, called from test tasks ----------------------------------------------------

    def silence(self) -> None:
        self._silenced = True
        self._serve_scope.cancel()

    def abort(self, ended_by: EndedBy, *, reset: bool = False) -> None:
        self.record._end(ended_by)
        self._reset = self._reset or reset
        self._end_scope.cancel()

    async def send_message(self, message: str | bytes) -> bool:
        return await self._send(_message(message))

    async def send_raw(self, data: bytes) -> bool:
        async with self._send_lock:
            return await self._write_raw(data)

    @asynccontextmanager
    async def raw_writer(self) -> AsyncIterator[Callable[[bytes], Awaitable[bool]]]:
        """Hold every other write (pongs, echoes, close frames) while the block writes raw
        bytes: a frame split over several writes stays whole on the wire."""
        async with self._send_lock:
            yield self._write_raw

    async def _write_raw(self, data: bytes) -> bool:
        # Caller holds the send lock.
        if self._silenced or self._closing:
            return False
        return await self._write(data)

    async def close(self, code: int, reason: str, close_timeout: float) -> None:
        """Start the closing handshake and wait (bounded) until the socket is closed."""
        if self.record.closed:
            return
        frame = CloseConnection(code=code, reason=reason)
        if await self._send(frame, ended_by="server_close", even_if_silenced=True):
            if self._silenced:  # nobody reads the answer: do not wait for it
                self.abort("server_close")
        elif self._ws.state in (ConnectionState.CONNECTING, ConnectionState.REJECTING):
            self.abort("server_drop")  # no WebSocket yet, so no close frame to send
        with anyio.move_on_after(close_timeout):
            await self.record.wait_closed()
        self.abort("server_close")
        await self.record.wait_closed()

    # -- The connection task ------------------------------------------------------------------

    async def run(self) -> None:
        try:
            with self._end_scope:
                try:
                    with self._serve_scope:
                        await self._serve()
                    if self._silenced:
                        await anyio.sleep_forever()
                except _GONE:
                    self.record._end("client_eof")
        finally:
            self._closing = True
            with anyio.CancelScope(shield=True):
                await self._close_socket()
            self.record._end("server_drop")  # only if nothing else was recorded: server exit
            self.record.closed = True
            self.record._changed()

    async def _serve(self) -> None:
        """Handshake, then frames; returning means "close the socket now"."""
        if self._config.ssl_context is not None:
            self._stream = await TLSStream.wrap(
                self._raw,
                server_side=True,
                ssl_context=self._config.ssl_context,
                standard_compatible=True,
            )
        request = await self._read_request()
        if request is None:
            return
        fault = self._fault
        if fault is None and self._config.authorize is not None:
            fault = await self._authorize(self._config.authorize)
        if isinstance(fault, Stall):
            await self._stall()
        if isinstance(fault, Refuse):
            await self._refuse(fault)
            await self._close_tls()
            return
        if not await self._accept(request):
            return
        if isinstance(fault, Flap):
            await self._flap(fault.code)
            return
        await self._run_hook()
        self.record.handshake_completed = True
        self.record._changed()
        await self._read_loop()
        await self._close_tls()

    # -- Opening handshake ----------------------------------------------------------------------

    async def _read_request(self) -> Request | None:
        received = bytearray()
        while True:
            data = await self._stream.receive(_RECEIVE_SIZE)
            received += data
            try:
                self._ws.receive_data(data)
                events = list(self._ws.events())
            except RemoteProtocolError as exc:
                if isinstance(self._fault, Stall):  # a stalled server does not judge requests
                    await self._stall()
                await self._refuse_bad_request(exc)
                return None
            for event in events:
                if isinstance(event, Request):
                    self.record.path = event.target
                    self.record.request_headers = _parse_headers(bytes(received))
                    self.record._changed()
                    return event

    async def _authorize(self, check: AuthorizeHook) -> Refuse | None:
        verdict = check(self.record)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if verdict is None or verdict is True:
            return None
        status = 401 if verdict is False else int(verdict)
        return Refuse(status, (), b"")

    async def _accept(self, request: Request) -> bool:
        chosen = next((p for p in request.subprotocols if p in self._config.subprotocols), None)
        self.record.subprotocol = chosen
        # wsproto's own permessage-deflate, when the client offers it: an independent peer.
        offered = any(str(offer).startswith("permessage-deflate") for offer in request.extensions)
        accept = AcceptConnection(
            subprotocol=chosen,
            extra_headers=_encode_headers(self._config.response_headers),
            extensions=[PerMessageDeflate()] if self._config.compression and offered else [],
        )
        return await self._send(accept, states=(ConnectionState.CONNECTING,))

    async def _refuse(self, fault: Refuse) -> None:
        headers = _encode_headers(fault.headers)
        if fault.body and not any(name.lower() == b"content-length" for name, _ in headers):
            headers.append((b"content-length", str(len(fault.body)).encode()))
        events: list[Event] = [
            RejectConnection(status_code=fault.status, headers=headers, has_body=bool(fault.body))
        ]
        if fault.body:
            events.append(RejectData(data=fault.body))
        await self._send(*events, states=(ConnectionState.CONNECTING,), ended_by="refused")

    async def _refuse_bad_request(self, exc: RemoteProtocolError) -> None:
        # h11 may be in an error state where wsproto cannot send the hint, so write it by hand.
        hint = exc.event_hint
        status = hint.status_code if isinstance(hint, RejectConnection) else 400
        self.record._end("refused")
        response = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            "content-length: 0\r\nconnection: close\r\n\r\n"
        )
        await self.send_raw(response.encode("ascii"))
        await self._close_tls()

    async def _stall(self) -> NoReturn:
        self.record._end("stalled")
        while True:  # read and ignore until the client gives up (a _GONE error)
            await self._stream.receive(_RECEIVE_SIZE)

    async def _run_hook(self) -> None:
        hook = self._config.on_handshake
        if hook is not None:
            result = hook(self.record)
            if result is not None:
                await result

    async def _flap(self, code: int | None) -> None:
        self.record.handshake_completed = True
        self.record._changed()
        if code is None:
            self.record._end("server_drop")
            return
        await self._send(CloseConnection(code=code), ended_by="server_close")
        with anyio.move_on_after(CLOSE_TIMEOUT):
            await self._read_loop()
        await self._close_tls()

    # -- Frames ---------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        """Serve frames until the closing handshake is over or the client broke the protocol."""
        while True:
            self._ws.receive_data(await self._stream.receive(_RECEIVE_SIZE))
            for event in self._ws.events():
                if isinstance(event, CloseConnection):
                    await self._on_close(event)
                    return
                if isinstance(event, (TextMessage, BytesMessage)):
                    await self._on_data(event)
                elif isinstance(event, Ping):
                    self.record.pings_received += 1
                    self.record._changed()
                    await self._send(event.response())

    async def _on_data(self, event: TextMessage | BytesMessage) -> None:
        message: str | bytes
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if not event.message_finished:
                return
            message = "".join(self._text)
            self._text.clear()
        else:
            self._binary.append(bytes(event.data))
            if not event.message_finished:
                return
            message = b"".join(self._binary)
            self._binary.clear()
        self.record.messages.append(message)
        self.record._changed()
        hook = self._config.on_message
        if hook is not None:
            result = hook(self.record, message)
            if result is not None:
                await result
        if self._config.echo:
            await self._send(_message(message))

    async def _on_close(self, event: CloseConnection) -> None:
        state = self._ws.state
        if state is ConnectionState.REMOTE_CLOSING:  # the client closed first: answer it
            self._record_close_frame(event)
            self.record._end("client_close")
            await self._send(event.response(), states=(ConnectionState.REMOTE_CLOSING,))
        elif state is ConnectionState.CLOSED:  # the client answered our close frame
            self._record_close_frame(event)
        else:
            # wsproto reports a protocol violation as a CloseConnection (1002, 1007, ...) without
            # changing state; failing the connection is our job (RFC 6455 section 7.1.7).
            await self._send(CloseConnection(code=event.code), ended_by="server_close")

    def _record_close_frame(self, event: CloseConnection) -> None:
        self.record.close_code = int(event.code)
        self.record.close_reason = event.reason or ""
        self.record._changed()

    # -- Writing and closing --------------------------------------------------------------------

    async def _send(
        self,
        *events: Event,
        states: Iterable[ConnectionState] = _OPEN,
        ended_by: EndedBy | None = None,
        even_if_silenced: bool = False,
    ) -> bool:
        """Send events if the state allows it; return whether they were written."""
        async with self._send_lock:
            if self._closing or (self._silenced and not even_if_silenced):
                return False
            if self._ws.state not in states:
                return False
            data = b"".join(self._ws.send(event) for event in events)
            if ended_by is not None:  # before the write: the answer may beat us back
                self.record._end(ended_by)
            return await self._write(data)

    async def _write(self, data: bytes) -> bool:
        # Caller holds the send lock.
        try:
            await self._stream.send(data)
        except _GONE:
            self.abort("client_eof")
            return False
        return True

    async def _close_tls(self) -> None:
        """Exchange TLS close_notify alerts (bounded) before the socket is closed."""
        if isinstance(self._stream, TLSStream):
            with anyio.move_on_after(CLOSE_TIMEOUT), suppress(*_GONE):
                await self._stream.unwrap()

    async def _close_socket(self) -> None:
        if self._reset:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            sock: socket.socket | None = self._raw.extra(SocketAttribute.raw_socket, None)
            if sock is not None:
                with suppress(OSError):
                    linger = struct.pack("ii", 1, 0)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        else:
            # Half-close first so the FIN is on the wire before close(), which sends RST instead
            # when unread client data is pending. (RFC 6455 section 7.1.1: the server closes TCP
            # first, so this is also the normal end of a closing handshake.)
            with suppress(*_GONE):
                await self._raw.send_eof()
        await self._raw.aclose()


def _message(data: str | bytes) -> Event:
    # Two branches so the type checker sees Message[str] and Message[bytes], never a mix.
    if isinstance(data, str):
        return Message(data=data)
    return Message(data=data)


def _encode_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]


def _parse_headers(request: bytes) -> list[tuple[str, str]]:
    """Pull the header lines out of a raw HTTP request that h11 has already validated."""
    head = request.split(b"\r\n\r\n", 1)[0]
    headers = []
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")))
    return headers
