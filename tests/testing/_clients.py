"""Clients that share no code with the server under test.

``connect`` gives one small interface over ``websockets`` (asyncio) and ``trio-websocket`` (trio),
picked by backend. The ``raw_*`` helpers speak hand-written HTTP over a plain anyio socket, for
checks that need the exact bytes on the wire.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Protocol
from urllib.parse import urlsplit

import anyio
from anyio.abc import SocketStream

__all__ = [
    "Client",
    "ClientClosedError",
    "connect",
    "masked_frame",
    "raw_connect",
    "raw_read_until_eof",
    "raw_upgrade",
]


class ClientClosedError(Exception):
    """The client's connection is closed; ``code`` is the close code it saw (1006: none)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(code)
        self.code = code


class Client(Protocol):
    subprotocol: str | None

    def response_header(self, name: str) -> str | None: ...
    async def send(self, message: str | bytes) -> None: ...
    async def recv(self) -> str | bytes: ...
    async def ping(self) -> None: ...
    async def close(self, code: int = 1000, reason: str = "") -> None: ...
    async def wait_close_code(self) -> int | None: ...


@asynccontextmanager
async def connect(
    backend: str,
    url: str,
    *,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Client]:
    """Connect with websockets on asyncio, trio-websocket on trio."""
    if backend == "asyncio":
        async with _websockets_client(url, subprotocols, headers, ssl_context) as client:
            yield client
    else:
        async with _trio_websocket_client(url, subprotocols, headers, ssl_context) as client:
            yield client


@asynccontextmanager
async def _websockets_client(
    url: str,
    subprotocols: Sequence[str],
    headers: Sequence[tuple[str, str]],
    ssl_context: ssl.SSLContext | None,
) -> AsyncIterator[Client]:
    from websockets.asyncio.client import ClientConnection
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed
    from websockets.typing import Subprotocol

    class WebsocketsClient:
        def __init__(self, ws: ClientConnection) -> None:
            self.ws = ws
            self.subprotocol = ws.subprotocol

        def response_header(self, name: str) -> str | None:
            return self.ws.response.headers.get(name)

        async def send(self, message: str | bytes) -> None:
            await self.ws.send(message)

        async def recv(self) -> str | bytes:
            try:
                return await self.ws.recv()
            except ConnectionClosed:
                raise ClientClosedError(self.ws.close_code) from None

        async def ping(self) -> None:
            await (await self.ws.ping())

        async def close(self, code: int = 1000, reason: str = "") -> None:
            await self.ws.close(code, reason)

        async def wait_close_code(self) -> int | None:
            await self.ws.wait_closed()
            return self.ws.close_code

    async with ws_connect(
        url,
        subprotocols=[Subprotocol(p) for p in subprotocols] or None,
        additional_headers=list(headers),
        ssl=ssl_context,
        ping_interval=None,
        close_timeout=2,
    ) as ws:
        yield WebsocketsClient(ws)


@asynccontextmanager
async def _trio_websocket_client(
    url: str,
    subprotocols: Sequence[str],
    headers: Sequence[tuple[str, str]],
    ssl_context: ssl.SSLContext | None,
) -> AsyncIterator[Client]:
    import trio
    from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

    class TrioWebsocketClient:
        def __init__(self, ws: WebSocketConnection) -> None:
            self.ws = ws
            self.subprotocol = ws.subprotocol

        def response_header(self, name: str) -> str | None:
            wanted = name.lower().encode()
            for key, value in self.ws.handshake_headers:
                if key.lower() == wanted:
                    return value.decode()
            return None

        async def send(self, message: str | bytes) -> None:
            await self.ws.send_message(message)

        async def recv(self) -> str | bytes:
            try:
                return await self.ws.get_message()
            except ConnectionClosed as exc:
                raise ClientClosedError(exc.reason.code if exc.reason else None) from None

        async def ping(self) -> None:
            await self.ws.ping()

        async def close(self, code: int = 1000, reason: str = "") -> None:
            await self.ws.aclose(code, reason)

        async def wait_close_code(self) -> int | None:
            try:
                while True:
                    await self.ws.get_message()
            except ConnectionClosed as exc:
                return exc.reason.code if exc.reason else None

    # open_websocket_url() leaks the client socket when the server closes first (the reader
    # stops at EOF and aclose() returns early), so we own the stream and close it ourselves.
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 0
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    async with trio.open_nursery() as nursery:
        stream: trio.SocketStream | trio.SSLStream[trio.SocketStream]
        stream = await trio.open_tcp_stream(host, port)
        if ssl_context is not None:
            stream = trio.SSLStream(stream, ssl_context, server_hostname=host)
        try:
            ws = await wrap_client_stream(
                nursery,
                stream,
                f"{host}:{port}",
                resource,
                subprotocols=list(subprotocols),
                extra_headers=[(k.encode(), v.encode()) for k, v in headers],
            )
            try:
                yield TrioWebsocketClient(ws)
            finally:
                with trio.move_on_after(2):
                    await ws.aclose()
        finally:
            with suppress(trio.BrokenResourceError), trio.move_on_after(2):
                await stream.aclose()
            nursery.cancel_scope.cancel()


# -- Raw sockets ----------------------------------------------------------------------------------

#: The RFC 6455 sample key; the server's answer is checked by neither side here.
_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


async def raw_connect(port: int) -> SocketStream:
    return await anyio.connect_tcp("127.0.0.1", port)


async def raw_upgrade(stream: SocketStream, port: int, path: str = "/") -> bytes:
    """Send an upgrade request by hand and return the response head (up to the blank line)."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await stream.send(request.encode("ascii"))
    return await _read_head(stream)


async def _read_head(stream: SocketStream) -> bytes:
    received = b""
    while b"\r\n\r\n" not in received:
        received += await stream.receive(1)  # one byte at a time: leave frames unread
    return received


async def raw_read_until_eof(stream: SocketStream) -> bytes:
    received = b""
    try:
        while True:
            received += await stream.receive()
    except anyio.EndOfStream:
        return received


def masked_frame(opcode: int, payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    """A final client frame (payload under 126 bytes), masked as RFC 6455 requires."""
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked
