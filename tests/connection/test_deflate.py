"""permessage-deflate over real sockets, on both backends: a hand-written server decides the
extension answer and every byte, and reads what the client sends (RSV1, masked, compressed).

Against an independent implementation too: the ``websockets`` server (asyncio only, it has
permessage-deflate on by default).
"""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteStream

from managed_websocket import (
    DeflateParams,
    WebSocketConnectionError,
    WebSocketExtensionError,
    WebSocketMessageTooBigError,
    connect_websocket,
    open_managed_websocket,
    open_websocket_connection,
)
from managed_websocket._deflate import OFFER
from managed_websocket.testing import open_test_server

pytestmark = pytest.mark.anyio

TIMEOUT = 20
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MiB = 1 << 20
GiB = 1 << 30


def zero_bomb(inflated: int) -> bytes:
    """Deflated zeros, ~1032:1 (see tests/test_deflate.py): 1 GiB in about 1 MiB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return piece * (inflated // MiB)


class DeflatePeer:
    """The server side of one connection, by hand, answering the extension offer as told."""

    def __init__(self, listener: anyio.abc.SocketListener, port: int) -> None:
        self._listener = listener
        self.url = f"ws://127.0.0.1:{port}/"
        self.stream: BufferedByteStream | None = None
        self.request = b""
        self.accepted = anyio.Event()

    async def accept(self, extensions: str | None) -> None:
        self.stream = BufferedByteStream(await self._listener.accept())
        self.request = await self.stream.receive_until(b"\r\n\r\n", 65536)
        key = next(
            line.split(b":", 1)[1].strip()
            for line in self.request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
        response = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n"
        )
        if extensions is not None:
            response += b"Sec-WebSocket-Extensions: " + extensions.encode() + b"\r\n"
        await self.stream.send(response + b"\r\n")
        self.accepted.set()

    async def send_frame(self, first: int, payload: bytes) -> None:
        assert self.stream is not None
        await self.accepted.wait()  # the 101 may still be on its way out
        length = len(payload)
        if length < 126:
            header = bytes([first, length])
        elif length < 65536:
            header = bytes([first, 126]) + struct.pack("!H", length)
        else:
            header = bytes([first, 127]) + struct.pack("!Q", length)
        await self.stream.send(header + payload)

    async def receive_frame(self) -> tuple[int, bytes]:
        """One client frame: ``(first byte, unmasked payload)``."""
        assert self.stream is not None
        first, second = await self.stream.receive_exactly(2)
        assert second & 0x80, "client frames must be masked"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.stream.receive_exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.stream.receive_exactly(8))
        mask = await self.stream.receive_exactly(4)
        payload = await self.stream.receive_exactly(length) if length else b""
        unmasked = int.from_bytes(payload, "big") ^ int.from_bytes((mask * length)[:length], "big")
        return first, unmasked.to_bytes(length, "big")

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()


@pytest.fixture
async def peer() -> AsyncIterator[DeflatePeer]:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        [socket_listener] = listener.listeners
        assert isinstance(socket_listener, anyio.abc.SocketListener)
        peer = DeflatePeer(socket_listener, listener.extra(anyio.abc.SocketAttribute.local_port))
        try:
            yield peer
        finally:
            await peer.aclose()


def extensions_header(request: bytes) -> list[bytes]:
    return [
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-extensions:")
    ]


@pytest.mark.parametrize(
    ("answer", "params"),
    [
        ("permessage-deflate", DeflateParams()),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            DeflateParams(True, True),
        ),
        ("permessage-deflate; server_max_window_bits=8", DeflateParams(False, False, 8)),
        ("permessage-deflate; client_max_window_bits=10", DeflateParams(False, False, 15, 10)),
        ("permessage-deflate; client_max_window_bits=8", DeflateParams(False, False, 15, 8)),
        ("permessage-deflate; client_max_window_bits", DeflateParams()),
    ],
)
async def test_messages_both_ways_under_each_legal_answer(
    peer: DeflatePeer, answer: str, params: DeflateParams
) -> None:
    takeover = not params.server_no_context_takeover
    compressor = zlib.compressobj(6, zlib.DEFLATED, -9)  # what zlib does for 8 bits
    texts = [f"message {i}: " + "abc" * 100 for i in range(3)]
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer.accept, answer)
            async with connect_websocket(peer.url) as conn:
                assert conn.compression == params
                for text in texts:
                    if not takeover:
                        compressor = zlib.compressobj(6, zlib.DEFLATED, -9)
                    data = compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
                    await peer.send_frame(0xC1, data[:-4])
                    assert await conn.receive() == text
                    await conn.send(text)
                    await conn.send("tiny")
                sent = [await peer.receive_frame() for _ in range(2 * len(texts))]
                tg.cancel_scope.cancel()

    assert extensions_header(peer.request) == [b"permessage-deflate; client_max_window_bits"]
    decompressor = zlib.decompressobj(-params.client_max_window_bits)
    for text, (first, payload), (tiny_first, tiny) in zip(
        texts, sent[::2], sent[1::2], strict=True
    ):
        assert (tiny_first, tiny) == (0x81, b"tiny")  # under the threshold: not compressed
        if params.client_max_window_bits == 8:
            assert (first, payload) == (0x81, text.encode())  # zlib cannot do 8: uncompressed
            continue
        assert first == 0xC1  # FIN, RSV1, text
        assert len(payload) < len(text)
        if params.client_no_context_takeover:
            decompressor = zlib.decompressobj(-params.client_max_window_bits)
        assert decompressor.decompress(payload + b"\x00\x00\xff\xff") == text.encode()


async def test_compression_none_offers_nothing(peer: DeflatePeer) -> None:
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer.accept, None)
            async with connect_websocket(peer.url, compression=None) as conn:
                assert conn.compression is None
                await conn.send("x" * 1000)
                assert await peer.receive_frame() == (0x81, b"x" * 1000)
                tg.cancel_scope.cancel()
    assert extensions_header(peer.request) == []


async def test_a_server_that_declines_means_uncompressed(peer: DeflatePeer) -> None:
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer.accept, None)
            async with connect_websocket(peer.url) as conn:
                assert conn.compression is None
                await conn.send("x" * 1000)
                assert await peer.receive_frame() == (0x81, b"x" * 1000)
                tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("answer", "compression"),
    [
        ("permessage-deflate; server_max_window_bits=16", "deflate"),
        ("permessage-deflate; mystery", "deflate"),
        ("x-webkit-deflate-frame", "deflate"),
        ("permessage-deflate", None),  # accepted what we never offered
    ],
)
async def test_an_illegal_answer_fails_the_handshake(
    peer: DeflatePeer, answer: str, compression: str | None
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer.accept, answer)
            with pytest.raises(WebSocketExtensionError) as exc_info:
                await open_websocket_connection(peer.url, compression=compression)  # type: ignore[arg-type]

    assert isinstance(exc_info.value, WebSocketConnectionError)
    assert str(exc_info.value).startswith("invalid permessage-deflate answer (")
    assert str(exc_info.value).endswith(f"({peer.url})")


async def test_a_1_gib_bomb_closes_with_1009(peer: DeflatePeer) -> None:
    bomb = zero_bomb(GiB)
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer.accept, "permessage-deflate")
            async with connect_websocket(peer.url, close_timeout=1) as conn:
                await peer.send_frame(0xC2, bomb)
                with pytest.raises(WebSocketMessageTooBigError) as exc_info:
                    await conn.receive()
                first, payload = await peer.receive_frame()
                tg.cancel_scope.cancel()

    assert exc_info.value.code == 1009
    assert (first, payload[:2]) == (0x88, struct.pack("!H", 1009))
    assert conn.close_code == 1009


async def test_a_1_kib_frame_over_a_small_limit_closes_with_1009(peer: DeflatePeer) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    small = (compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert len(small) < 1100
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(peer.accept, "permessage-deflate")
            async with connect_websocket(peer.url, max_message_size=65536, close_timeout=1) as conn:
                await peer.send_frame(0xC2, small)
                with pytest.raises(WebSocketMessageTooBigError):
                    await conn.receive()
                first, payload = await peer.receive_frame()
                tg.cancel_scope.cancel()
    assert (first, payload[:2]) == (0x88, struct.pack("!H", 1009))


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # websockets serves on asyncio
async def test_against_the_websockets_server() -> None:
    from websockets.asyncio.server import ServerConnection, serve

    received: list[str | bytes] = []

    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            received.append(message)
            await connection.send(message)

    messages: list[str | bytes] = ["json " * 200, bytes(range(256)) * 64, "short"]
    with anyio.fail_after(TIMEOUT):
        async with serve(echo, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            async with connect_websocket(f"ws://127.0.0.1:{port}/") as conn:
                assert conn.compression is not None
                for message in messages:
                    await conn.send(message)
                    assert await conn.receive() == message
                # Compressed on the wire: far fewer bytes than the payloads.
                assert conn.bytes_sent < sum(len(m) for m in messages) / 4
                assert conn.bytes_received < sum(len(m) for m in messages) / 4
    assert received == messages


# Against the test server with wsproto's permessage-deflate, on both backends


async def test_against_the_test_server_with_wsproto_deflate() -> None:
    big = '{"type": "trade", "price": "101.5", "qty": "3"}' * 200
    with anyio.fail_after(TIMEOUT):
        async with open_test_server(compression=True) as server:
            async with connect_websocket(server.url) as conn:
                assert conn.compression == DeflateParams()
                await conn.send(big)
                assert await conn.receive() == big
                assert conn.bytes_sent < len(big) / 10
                assert conn.bytes_received < len(big) / 10
            await server.wait_for_messages(1)
            assert server.clients[0].messages == [big]


async def test_the_manager_offers_compression_unless_told_not_to() -> None:
    big = "x" * 10_000
    with anyio.fail_after(TIMEOUT):
        async with open_test_server(compression=True) as server:
            for compression in ("deflate", None):
                async with open_managed_websocket(
                    server.url, decode=None, compression=compression
                ) as ws:
                    await ws.send(big)
                    assert await ws.receive() == big
                    await ws.close()
                client = server.clients[-1]
                assert client.messages == [big]
                offered = client.header("sec-websocket-extensions")
                expected = None if compression is None else OFFER
                assert offered == expected
