"""The connection against the scripted test server (:mod:`managed_websocket.testing`).

These are the cases an ordinary server will not produce on demand: refused and stalled upgrades,
malformed frames, TCP dropped or reset under the client, and checks that the client's socket is
really closed whichever way the ``async with`` block ends (the server's record shows it).
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteStream

from managed_websocket import (
    WebSocketAbnormalClosureError,
    WebSocketClosedError,
    WebSocketConnection,
    WebSocketHandshakeError,
    WebSocketProtocolError,
    WebSocketTimeoutError,
    connect_websocket,
    open_websocket_connection,
)
from managed_websocket.testing import ClientRecord, WebSocketTestServer, open_test_server

pytestmark = pytest.mark.anyio

TIMEOUT = 10


def text_frame(text: str) -> bytes:
    """An unmasked, final text frame (server to client), payload under 126 bytes."""
    payload = text.encode()
    assert len(payload) < 126
    return bytes([0x81, len(payload)]) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    payload = struct.pack("!H", code) + reason.encode()
    assert len(payload) < 126
    return bytes([0x88, len(payload)]) + payload


async def _connected_client(server: WebSocketTestServer) -> ClientRecord:
    await server.wait_for_handshakes(1)
    return server.clients[0]


# Refused and stalled upgrades


async def test_refused_403_is_a_handshake_error_not_retryable() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            server.refuse_handshakes(403, body=b"forbidden")
            with pytest.raises(WebSocketHandshakeError) as exc_info:
                await open_websocket_connection(f"{server.url}/feed")
            await server.clients[0].wait_closed()

    exc = exc_info.value
    assert str(exc) == f"server refused the WebSocket upgrade with HTTP 403 ({server.url}/feed)"
    assert exc.status_code == 403
    assert exc.body == b"forbidden"
    assert exc.retry_after is None
    assert exc.is_retryable is False
    assert server.clients[0].ended_by == "refused"
    assert server.clients[0].path == "/feed"


async def test_refused_without_body() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            server.refuse_handshakes(429, headers=[("Retry-After", "2")])
            with pytest.raises(WebSocketHandshakeError) as exc_info:
                await open_websocket_connection(f"{server.url}/")
            await server.clients[0].wait_closed()

    exc = exc_info.value
    assert exc.status_code == 429
    assert exc.body == b""
    assert exc.retry_after == 2.0
    assert exc.is_retryable is True


async def test_refused_503_keeps_retry_after_and_a_bounded_body_snippet() -> None:
    body = bytes(range(256)) * 40  # 10 KiB, every byte value
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            server.refuse_handshakes(
                503, headers=[("Retry-After", "7"), ("X-Reason", "maintenance")], body=body
            )
            with pytest.raises(WebSocketHandshakeError) as exc_info:
                await open_websocket_connection(f"{server.url}/")
            await server.clients[0].wait_closed()

    exc = exc_info.value
    assert exc.status_code == 503
    assert exc.retry_after == 7.0
    assert exc.is_retryable is True
    assert exc.body == body[:512]
    assert exc.headers["x-reason"] == "maintenance"
    assert exc.headers["content-length"] == str(len(body))
    # The body is kept as an attribute, never shown.
    assert str(exc) == f"server refused the WebSocket upgrade with HTTP 503 ({server.url}/)"


async def test_stalled_handshake_times_out() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            server.stall_handshakes()
            start = anyio.current_time()
            with pytest.raises(WebSocketTimeoutError) as exc_info:
                await open_websocket_connection(f"{server.url}/", connection_timeout=0.3)
            elapsed = anyio.current_time() - start
            # The client closed its socket on the way out.
            await server.clients[0].wait_closed()

    exc = exc_info.value
    assert str(exc) == "connect timed out after 0.3 s"
    assert exc.operation == "connect"
    assert exc.timeout == 0.3
    assert isinstance(exc, TimeoutError)
    assert 0.3 <= elapsed < 2.0
    assert server.clients[0].ended_by == "stalled"


async def test_a_refusal_applies_to_the_next_connection_only() -> None:
    """A fault applies to the next upgrade only; the connection after it is served normally."""
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            server.refuse_handshakes(500)
            with pytest.raises(WebSocketHandshakeError):
                await open_websocket_connection(f"{server.url}/")
            async with connect_websocket(f"{server.url}/") as conn:
                await conn.send("ok")
                assert await conn.receive() == "ok"

    assert [record.ended_by for record in server.clients] == ["refused", "client_close"]


# Malformed frames from the server

MALFORMED_FRAMES = [
    pytest.param(b"\xc1\x01a", 1002, id="rsv1-set"),
    pytest.param(b"\x81\x02\xff\xfe", 1007, id="invalid-utf8"),
    pytest.param(b"\x83\x00", 1002, id="reserved-opcode"),
    pytest.param(b"\x09\x00", 1002, id="fragmented-ping"),
    pytest.param(b"\x81\x81\x01\x02\x03\x04\x60", 1002, id="masked-by-server"),
]


@pytest.mark.parametrize(("frame", "code"), MALFORMED_FRAMES)
async def test_malformed_frame_fails_the_connection(frame: bytes, code: int) -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            async with connect_websocket(f"{server.url}/", close_timeout=2) as conn:
                record = await _connected_client(server)
                await server.send_raw(frame)
                with pytest.raises(WebSocketProtocolError) as exc_info:
                    await conn.receive()
                assert not conn.is_open
                assert conn.close_code == code
                # Sending now says "closed", with the code we closed with.
                with pytest.raises(WebSocketClosedError) as send_exc:
                    await conn.send("too late")
            await record.wait_closed()

    exc = exc_info.value
    assert type(exc) is WebSocketProtocolError
    assert exc.code == code
    assert str(exc).endswith(f" (closed with {code})")
    assert send_exc.value.code == code
    # We failed the connection with a close frame carrying the code (RFC 6455 7.1.7).
    assert record.close_code == code
    assert record.ended_by == "client_close"


# Connections that end without a close frame


async def test_fin_without_close_frame_is_abnormal_closure() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server, connect_websocket(f"{server.url}/") as conn:
            record = await _connected_client(server)
            await server.drop_clients()
            with pytest.raises(WebSocketAbnormalClosureError) as exc_info:
                await conn.receive()
            assert conn.close_code == 1006
            assert not conn.is_open

    assert str(exc_info.value) == "connection lost without a close frame (code 1006)"
    assert exc_info.value.code == 1006
    assert record.ended_by == "server_drop"
    assert record.close_code is None


async def test_rst_is_abnormal_closure() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server, connect_websocket(f"{server.url}/") as conn:
            record = await _connected_client(server)
            await server.reset_clients()
            with pytest.raises(WebSocketAbnormalClosureError) as exc_info:
                await conn.receive()
            assert conn.close_code == 1006
            # A send afterwards does not reach the dead socket.
            with pytest.raises(WebSocketClosedError) as send_exc:
                await conn.send("x")

    assert exc_info.value.code == 1006
    assert send_exc.value.code == 1006
    assert record.ended_by == "server_reset"


async def _send_until_it_fails(conn: WebSocketConnection) -> None:
    for _ in range(1000):  # the first writes may still succeed into the socket buffer
        await conn.send(b"x" * 65536)


async def test_rst_while_the_client_sends_ends_in_a_closed_error() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server, connect_websocket(f"{server.url}/") as conn:
            await _connected_client(server)
            await server.reset_clients()
            with pytest.raises(WebSocketClosedError) as exc_info:
                await _send_until_it_fails(conn)
            with pytest.raises(WebSocketClosedError):
                await conn.receive()

    assert exc_info.value.code == 1006


async def test_flapping_server_close_code_reaches_the_client() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            server.flap(code=1012)
            async with connect_websocket(f"{server.url}/") as conn:
                with pytest.raises(WebSocketClosedError) as exc_info:
                    await conn.receive()
            await server.clients[0].wait_closed()

    assert type(exc_info.value) is WebSocketClosedError
    assert exc_info.value.code == 1012
    assert conn.close_code == 1012
    assert server.clients[0].ended_by == "server_close"
    # We answered the server's close frame with its code.
    assert server.clients[0].close_code == 1012


async def test_server_close_is_answered_and_recorded() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server, connect_websocket(f"{server.url}/") as conn:
            record = await _connected_client(server)
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.close_clients, 4002, "maintenance")
                with pytest.raises(WebSocketClosedError) as exc_info:
                    await conn.receive()
            await record.wait_closed()

    assert exc_info.value.code == 4002
    assert exc_info.value.reason == "maintenance"
    # The reason explains the close: in the message too (quoted).
    assert (
        str(exc_info.value) == "connection closed by the server (code 4002, reason 'maintenance')"
    )
    assert record.ended_by == "server_close"
    assert record.close_code == 4002


# Sending


async def test_send_after_close_raises_closed_error() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server, connect_websocket(f"{server.url}/") as conn:
            await conn.aclose()
            with pytest.raises(WebSocketClosedError) as exc_info:
                await conn.send("late")
            with pytest.raises(WebSocketClosedError):
                await conn.send(b"late")
            with pytest.raises(WebSocketClosedError):
                await conn.receive()

    assert type(exc_info.value) is WebSocketClosedError
    assert exc_info.value.code == 1000
    assert server.clients[0].messages == []


async def test_send_after_server_close_raises_closed_error() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server, connect_websocket(f"{server.url}/") as conn:
            await _connected_client(server)
            await server.send_raw(close_frame(4003, "bye"))
            with pytest.raises(WebSocketClosedError) as receive_exc:
                await conn.receive()
            with pytest.raises(WebSocketClosedError) as send_exc:
                await conn.send("late")

    assert receive_exc.value.code == 4003
    assert send_exc.value is receive_exc.value


@pytest.mark.parametrize(
    ("data", "type_name"),
    [(123, "int"), (None, "NoneType"), ({"a": 1}, "dict"), (["x"], "list")],
)
async def test_send_rejects_other_types(data: object, type_name: str) -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server, connect_websocket(f"{server.url}/") as conn:
            with pytest.raises(TypeError, match=rf"^can only send str or bytes, not {type_name}$"):
                await conn.send(data)  # type: ignore[arg-type]
            # The connection is still usable.
            await conn.send("still open")
            assert await conn.receive() == "still open"

    assert server.clients[0].messages == ["still open"]


async def test_send_accepts_bytearray_and_memoryview_as_binary() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server, connect_websocket(f"{server.url}/") as conn:
            # Accepted at run time, though the annotation says str | bytes.
            await conn.send(bytearray(b"ba"))  # type: ignore[arg-type]
            await conn.send(memoryview(b"mv"))  # type: ignore[arg-type]
            assert await conn.receive() == b"ba"
            assert await conn.receive() == b"mv"

    assert server.clients[0].messages == [b"ba", b"mv"]


# Receiving what came before the close


async def test_messages_before_the_close_frame_are_returned_first() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server, connect_websocket(f"{server.url}/") as conn:
            record = await _connected_client(server)
            # One write, so the messages and the close frame arrive in one read.
            await server.send_raw(
                text_frame("one")
                + text_frame("two")
                + text_frame("three")
                + close_frame(4001, "done")
            )
            assert await conn.receive() == "one"
            assert not conn.is_open  # the close frame was read with the first message
            assert await conn.receive() == "two"
            assert await conn.receive() == "three"
            with pytest.raises(WebSocketClosedError) as exc_info:
                await conn.receive()
            await record.wait_closed()

    assert exc_info.value.code == 4001
    assert exc_info.value.reason == "done"
    assert record.close_code == 4001  # we echoed the server's code


async def test_receive_batch_returns_everything_before_the_close() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server, connect_websocket(f"{server.url}/") as conn:
            await _connected_client(server)
            await server.send_raw(text_frame("a") + text_frame("b") + close_frame(1001))
            assert await conn.receive_batch() == ["a", "b"]
            with pytest.raises(WebSocketClosedError) as exc_info:
                await conn.receive_batch()

    assert exc_info.value.code == 1001


async def test_messages_before_a_drop_are_returned_first() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server, connect_websocket(f"{server.url}/") as conn:
            record = await _connected_client(server)
            assert await server.send(record, "first")
            assert await server.send(record, b"second")
            await server.drop_clients()
            assert await conn.receive() == "first"
            assert await conn.receive() == b"second"
            with pytest.raises(WebSocketAbnormalClosureError):
                await conn.receive()


async def test_messages_before_a_graceful_server_close_are_returned_first() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server, connect_websocket(f"{server.url}/") as conn:
            record = await _connected_client(server)
            await server.broadcast("x")
            await server.broadcast("y")
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.close_clients, 4005, "")
                # Let the server write its close frame before we read anything.
                await anyio.wait_all_tasks_blocked()
                assert record.ended_by == "server_close"
                assert await conn.receive() == "x"
                assert await conn.receive() == "y"
                with pytest.raises(WebSocketClosedError) as exc_info:
                    await conn.receive()
            await record.wait_closed()

    assert exc_info.value.code == 4005
    assert record.close_code == 4005


async def test_greeting_right_after_the_upgrade_is_received() -> None:
    """Frames that may share a packet with the 101 response are not lost."""
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:

            async def greet(record: ClientRecord) -> None:
                await server.send(record, "welcome")
                await server.send(record, b"\x01\x02")

            server.on_handshake(greet)
            async with connect_websocket(f"{server.url}/") as conn:
                assert await conn.receive() == "welcome"
                assert await conn.receive() == b"\x01\x02"


# The socket is closed whichever way the block ends


async def test_socket_closed_after_normal_exit() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            async with connect_websocket(f"{server.url}/") as conn:
                record = await _connected_client(server)
                await conn.send("bye")
                assert await conn.receive() == "bye"
            await record.wait_closed()

    assert record.closed
    assert record.ended_by == "client_close"
    assert record.close_code == 1000
    assert conn.close_code == 1000
    assert not conn.is_open


async def test_socket_closed_after_an_exception_in_the_block() -> None:
    connections: list[WebSocketConnection] = []
    records: list[ClientRecord] = []

    async def fail_inside(server: WebSocketTestServer) -> None:
        async with connect_websocket(f"{server.url}/") as conn:
            connections.append(conn)
            records.append(await _connected_client(server))
            raise RuntimeError("boom")

    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            with pytest.raises(RuntimeError, match=r"^boom$"):
                await fail_inside(server)
            [conn], [record] = connections, records
            await record.wait_closed()

    # Aborted: no close frame, just the end of TCP.
    assert record.closed
    assert record.ended_by == "client_eof"
    assert record.close_code is None
    assert not conn.is_open
    assert isinstance(conn.closed_error, WebSocketAbnormalClosureError)


async def test_socket_closed_after_cancellation() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            with anyio.CancelScope() as scope:
                async with connect_websocket(f"{server.url}/") as conn:
                    record = await _connected_client(server)
                    scope.cancel()
                    await conn.receive()  # cancelled while waiting for a message
            assert scope.cancelled_caught
            await record.wait_closed()

    assert record.closed
    assert record.ended_by == "client_eof"
    assert record.close_code is None
    assert not conn.is_open


async def test_graceful_close_against_a_silent_server_is_bounded_by_close_timeout() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            async with connect_websocket(f"{server.url}/", close_timeout=0.2) as conn:
                record = await _connected_client(server)
                server.silence_clients()
                start = anyio.current_time()
            elapsed = anyio.current_time() - start
            await server.drop_clients()
            await record.wait_closed()

    assert 0.2 <= elapsed < 1.5
    assert conn.close_code == 1000


# Ping from several tasks


async def test_concurrent_pings_all_complete() -> None:
    rtts: list[float] = []

    async def ping(conn: WebSocketConnection) -> None:
        rtts.append(await conn.ping())

    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server, connect_websocket(f"{server.url}/") as conn:
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(ping, conn)
            record = server.clients[0]

    assert len(rtts) == 10
    assert all(0 < rtt < 1.0 for rtt in rtts)
    assert record.pings_received == 10


async def test_concurrent_pings_with_the_same_payload_all_complete() -> None:
    rtts: list[float] = []

    async def ping(conn: WebSocketConnection) -> None:
        rtts.append(await conn.ping(b"same"))

    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server, connect_websocket(f"{server.url}/") as conn:
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(ping, conn)
            # Nothing is left waiting: a later ping with that payload works too.
            rtts.append(await conn.ping(b"same"))

    assert len(rtts) == 4
    assert all(0 < rtt < 1.0 for rtt in rtts)


async def test_ping_payload_longer_than_a_control_frame_is_refused() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server, connect_websocket(f"{server.url}/") as conn:
            with pytest.raises(ValueError, match=r"^payload too long for control frame$"):
                await conn.ping(b"x" * 126)
            assert 0 < await conn.ping(b"x" * 125) < 1.0
            await conn.send("still open")
            assert await conn.receive() == "still open"

    assert server.clients[0].pings_received == 1


# Closing while another task reads


async def test_aclose_wakes_a_task_blocked_in_receive() -> None:
    errors: list[WebSocketClosedError] = []

    async def reader(conn: WebSocketConnection) -> None:
        with pytest.raises(WebSocketClosedError) as exc_info:
            await conn.receive()
        errors.append(exc_info.value)

    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            async with connect_websocket(f"{server.url}/") as conn, anyio.create_task_group() as tg:
                tg.start_soon(reader, conn)
                await anyio.wait_all_tasks_blocked()
                await conn.aclose(4100, "shutting down")
            await server.clients[0].wait_closed()

    [error] = errors
    assert type(error) is WebSocketClosedError
    assert error.code == 4100
    assert server.clients[0].close_code == 4100
    assert server.clients[0].close_reason == "shutting down"
    assert server.clients[0].ended_by == "client_close"


async def test_aclose_wakes_a_blocked_reader_when_the_server_never_answers() -> None:
    errors: list[WebSocketClosedError] = []

    async def reader(conn: WebSocketConnection) -> None:
        with pytest.raises(WebSocketClosedError) as exc_info:
            await conn.receive()
        errors.append(exc_info.value)

    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            async with (
                connect_websocket(f"{server.url}/", close_timeout=0.2) as conn,
                anyio.create_task_group() as tg,
            ):
                await _connected_client(server)
                tg.start_soon(reader, conn)
                await anyio.wait_all_tasks_blocked()
                server.silence_clients()
                start = anyio.current_time()
                await conn.aclose()
                elapsed = anyio.current_time() - start
            await server.drop_clients()

    assert 0.2 <= elapsed < 1.5
    [error] = errors
    assert error.code == 1000


# Message size limit, counted across fragments and before the whole message arrives


async def test_fragments_adding_up_over_the_limit_fail_with_1009() -> None:
    fragment = b"f" * 600
    header = struct.pack("!BBH", 0x02, 126, len(fragment))  # binary, not final
    last = struct.pack("!BBH", 0x80, 126, len(fragment))  # continuation, final
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            async with connect_websocket(f"{server.url}/", max_message_size=1000) as conn:
                record = await _connected_client(server)
                await server.send_raw(header + fragment + last + fragment)
                with pytest.raises(WebSocketProtocolError) as exc_info:
                    await conn.receive()
            await record.wait_closed()

    assert exc_info.value.code == 1009
    assert record.close_code == 1009


async def test_huge_announced_frame_fails_before_it_has_arrived() -> None:
    # The header announces 100 MB; only 2000 bytes ever come.
    header = struct.pack("!BBQ", 0x82, 127, 100_000_000)
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            async with connect_websocket(f"{server.url}/", max_message_size=1000) as conn:
                record = await _connected_client(server)
                await server.send_raw(header + b"x" * 2000)
                with pytest.raises(WebSocketProtocolError) as exc_info:
                    await conn.receive()
            await record.wait_closed()

    assert exc_info.value.code == 1009
    assert record.close_code == 1009


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(b"\x88\x01\x00", 1002, id="one-byte-close-payload"),
        pytest.param(b"\x88\x02\x03\xed", 1002, id="close-code-1005-on-the-wire"),
        pytest.param(b"\x88\x02\x03\xe7", 1002, id="close-code-999"),
        pytest.param(b"\x88\x04\x03\xe8\xff\xfe", 1007, id="close-reason-invalid-utf8"),
    ],
)
async def test_invalid_close_frame_fails_the_connection(frame: bytes, code: int) -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            async with connect_websocket(f"{server.url}/") as conn:
                record = await _connected_client(server)
                await server.send_raw(frame)
                with pytest.raises(WebSocketProtocolError) as exc_info:
                    await conn.receive()
            await record.wait_closed()

    assert exc_info.value.code == code
    assert record.close_code == code


# Secrets in the URL


async def test_repr_masks_credentials_and_tokens() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            url = f"ws://user:hunter2@127.0.0.1:{server.port}/feed?token=s3cret&x=1"
            async with connect_websocket(url) as conn:
                masked = f"ws://***@127.0.0.1:{server.port}/feed?token=***&x=1"
                assert repr(conn) == f"<WebSocketConnection {masked} open>"
                assert str(conn.url) == masked
            assert repr(conn) == f"<WebSocketConnection {masked} closed code=1000>"
            await server.clients[0].wait_closed()

    # The real URL went to the server, as it must.
    assert server.clients[0].path == "/feed?token=s3cret&x=1"


# A hand-written server, for byte-exact timing the test server does not offer


class RawPeer:
    """The server side of one connection, written by hand: the test decides every byte."""

    def __init__(self, listener: anyio.abc.SocketListener, port: int) -> None:
        self._listener = listener
        self.url = f"ws://127.0.0.1:{port}/"
        self._stream: BufferedByteStream | None = None

    async def accept(self, after_101: bytes = b"") -> None:
        """Accept the connection and answer its upgrade; ``after_101`` goes in the same write."""
        self._stream = BufferedByteStream(await self._listener.accept())
        request = await self._stream.receive_until(b"\r\n\r\n", 65536)
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
        response = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        await self._stream.send(response + after_101)

    async def send(self, data: bytes) -> None:
        assert self._stream is not None
        await self._stream.send(data)

    async def receive_frame(self) -> tuple[int, bytes]:
        """One frame from the client (masked, as clients must): ``(opcode, payload)``."""
        assert self._stream is not None
        first, second = await self._stream.receive_exactly(2)
        assert second & 0x80, "client frames must be masked"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self._stream.receive_exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self._stream.receive_exactly(8))
        mask = await self._stream.receive_exactly(4)
        payload = await self._stream.receive_exactly(length) if length else b""
        return first & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    async def answer_close(self) -> None:
        """Read frames up to the client's close frame and answer it with the same code."""
        while True:
            opcode, payload = await self.receive_frame()
            if opcode == 0x8:
                await self.send(bytes([0x88, len(payload[:2])]) + payload[:2])
                return

    async def at_eof(self) -> bool:
        """Whether the client has closed its end (the next read finds nothing more)."""
        assert self._stream is not None
        try:
            data = await self._stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return True
        raise AssertionError(f"unexpected data from the client: {data!r}")

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@pytest.fixture
async def raw_peer() -> AsyncIterator[RawPeer]:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        [socket_listener] = listener.listeners
        assert isinstance(socket_listener, anyio.abc.SocketListener)
        peer = RawPeer(socket_listener, listener.extra(anyio.abc.SocketAttribute.local_port))
        try:
            yield peer
        finally:
            await peer.aclose()


async def test_frames_in_the_same_packet_as_the_101_are_kept(raw_peer: RawPeer) -> None:
    after_101 = text_frame("early") + text_frame("bird") + close_frame(4000, "bye")
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(raw_peer.accept, after_101)
            async with connect_websocket(raw_peer.url) as conn:
                assert await conn.receive() == "early"
                assert await conn.receive() == "bird"
                with pytest.raises(WebSocketClosedError) as exc_info:
                    await conn.receive()
        # We answered the close frame with its code.
        opcode, payload = await raw_peer.receive_frame()

    assert exc_info.value.code == 4000
    assert exc_info.value.reason == "bye"
    assert (opcode, payload[:2]) == (0x8, struct.pack("!H", 4000))


async def test_cancelled_send_and_receive_take_nothing_and_leave_the_connection_whole(
    raw_peer: RawPeer,
) -> None:
    """The send and read locks are taken without a cancellation check of their own (the socket
    stream checks): a send or a read in a cancelled scope still writes and consumes nothing."""
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(raw_peer.accept)
            async with connect_websocket(raw_peer.url) as conn:
                await anyio.wait_all_tasks_blocked()  # accept() has finished writing the 101
                await raw_peer.send(text_frame("waiting"))
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await conn.send("never")
                    pytest.fail("sent in a cancelled scope")
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    await conn.receive()
                    pytest.fail("received in a cancelled scope")
                await conn.send("after")
                assert await raw_peer.receive_frame() == (0x1, b"after")
                assert await conn.receive() == "waiting"
                tg.start_soon(raw_peer.answer_close)


async def test_ping_waiting_for_a_reader_that_gets_cancelled_reads_itself(
    raw_peer: RawPeer,
) -> None:
    """A pinger waits while another task reads; that reader is cancelled before the pong comes,
    so the pinger must take over reading instead of waiting for a reader that is gone."""
    rtts: list[float] = []
    pinged = anyio.Event()
    reader_scope = anyio.CancelScope()

    async def reader(conn: WebSocketConnection) -> None:
        with reader_scope:
            await conn.receive()

    async def ping(conn: WebSocketConnection) -> None:
        rtts.append(await conn.ping(b"p1"))
        pinged.set()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(raw_peer.accept)
            async with connect_websocket(raw_peer.url) as conn:
                tg.start_soon(reader, conn)
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(ping, conn)
                assert await raw_peer.receive_frame() == (0x9, b"p1")
                await anyio.wait_all_tasks_blocked()  # the pinger waits for the reader
                reader_scope.cancel()
                await anyio.wait_all_tasks_blocked()  # the reader has stopped
                assert not pinged.is_set()
                await raw_peer.send(b"\x8a\x02p1")  # the pong, once nobody reads any more
                await pinged.wait()
                tg.start_soon(raw_peer.answer_close)

    assert reader_scope.cancelled_caught
    assert len(rtts) == 1
    assert 0 < rtts[0] < TIMEOUT


async def test_socket_closed_when_cancelled_during_the_graceful_close(raw_peer: RawPeer) -> None:
    """aclose() waits for the server's close frame; cancelled meanwhile, it still closes TCP."""
    connections: list[WebSocketConnection] = []
    scope = anyio.CancelScope()

    async def client() -> None:
        with scope:
            async with connect_websocket(raw_peer.url, close_timeout=30) as conn:
                connections.append(conn)
            # Leaving the block: aclose() sends its close frame, then waits for ours (never sent).

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client)
            await raw_peer.accept()
            assert await raw_peer.receive_frame() == (0x8, struct.pack("!H", 1000))
            await anyio.wait_all_tasks_blocked()  # the client waits in aclose()
            scope.cancel()
        assert await raw_peer.at_eof()

    assert scope.cancelled_caught
    [conn] = connections
    assert not conn.is_open
    assert conn.close_code == 1000


async def test_a_pong_for_the_latest_ping_answers_the_earlier_ones_too(raw_peer: RawPeer) -> None:
    """RFC 6455 5.5.3: a peer may answer only the most recent of several pings."""
    answered: list[bytes] = []

    async def ping(conn: WebSocketConnection, payload: bytes) -> None:
        await conn.ping(payload)
        answered.append(payload)

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(raw_peer.accept)
            async with connect_websocket(raw_peer.url) as conn:
                async with anyio.create_task_group() as pings:
                    pings.start_soon(ping, conn, b"p1")
                    assert await raw_peer.receive_frame() == (0x9, b"p1")
                    pings.start_soon(ping, conn, b"p2")
                    assert await raw_peer.receive_frame() == (0x9, b"p2")
                    await raw_peer.send(b"\x8a\x05other")  # unsolicited: answers nothing
                    await anyio.wait_all_tasks_blocked()
                    assert answered == []
                    await raw_peer.send(b"\x8a\x02p2")  # only the latest is answered
                assert sorted(answered) == [b"p1", b"p2"]
                tg.start_soon(raw_peer.answer_close)


# Handing the socket from one reading task to another (read_batch / interrupt_read)


async def test_interrupt_read_ends_a_waiting_read_batch_and_loses_nothing() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server(echo=False) as server, connect_websocket(server.url) as conn:
            client = await _connected_client(server)
            results: list[list[str | bytes]] = []

            async def reader() -> None:
                results.append(await conn.read_batch())

            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await anyio.sleep(0.05)  # the reader waits on the socket
                conn.interrupt_read()
            assert results == [[]]
            # What the server sends next is there for the next reader, in order.
            await server.send_raw(text_frame("a") + text_frame("b"), client)
            assert await conn.read_batch() == ["a", "b"]
            assert conn.is_open


async def test_interrupt_read_reaches_a_read_batch_still_waiting_for_the_read_lock() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server(echo=False) as server, connect_websocket(server.url) as conn:
            client = await _connected_client(server)
            results: list[tuple[str, list[str | bytes]]] = []

            async def read(name: str) -> None:
                results.append((name, await conn.read_batch()))

            async with anyio.create_task_group() as tg:
                tg.start_soon(read, "first")  # holds the read lock, waits on the socket
                await anyio.sleep(0.05)
                tg.start_soon(read, "second")  # queued for the lock
                await anyio.sleep(0.05)
                conn.interrupt_read()  # both give way: neither goes on to wait on the socket
            assert sorted(results) == [("first", []), ("second", [])]
            await server.send_raw(text_frame("c"), client)
            assert await conn.read_batch() == ["c"]


async def test_an_interrupt_before_a_read_batch_starts_does_not_affect_it() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server(echo=False) as server, connect_websocket(server.url) as conn:
            client = await _connected_client(server)
            conn.interrupt_read()  # nobody is reading: nothing to interrupt
            await server.send_raw(text_frame("d"), client)
            assert await conn.read_batch() == ["d"]


async def test_a_read_after_a_full_one_is_not_interruptible_but_ends_with_the_socket() -> None:
    """A read that filled the buffer means the peer sends faster than we read: the next read
    skips the interrupt scope (its cost shows on bulk transfers), so interrupt_read() does not
    end it. Bytes still end it, and so does the connection's end; once a read comes back short,
    reads are interruptible again."""
    read_size = 1024
    full_frame = b"\x82\x7e" + struct.pack("!H", read_size - 4) + bytes(read_size - 4)
    with anyio.fail_after(TIMEOUT):
        async with (
            open_test_server(echo=False) as server,
            connect_websocket(server.url, read_size=read_size) as conn,
        ):
            client = await _connected_client(server)
            await server.send_raw(full_frame, client)
            assert await conn.read_batch() == [bytes(read_size - 4)]  # one read, buffer full
            results: list[list[str | bytes]] = []

            async def reader() -> None:
                results.append(await conn.read_batch())

            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await anyio.sleep(0.05)
                conn.interrupt_read()
                await anyio.sleep(0.05)
                assert results == []  # still waiting on the socket
                await server.send_raw(text_frame("x"), client)
            assert results == [["x"]]
            async with anyio.create_task_group() as tg:  # a short read: interruptible again
                tg.start_soon(reader)
                await anyio.sleep(0.05)
                conn.interrupt_read()
            assert results == [["x"], []]

            await server.send_raw(full_frame, client)
            assert len(await conn.read_batch()) == 1
            ended: list[BaseException] = []

            async def last_reader() -> None:
                try:
                    await conn.read_batch()
                except WebSocketAbnormalClosureError as exc:
                    ended.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(last_reader)
                await anyio.sleep(0.05)
                await conn.abort()
            assert len(ended) == 1


async def test_read_batch_raises_once_the_connection_ended() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server(echo=False) as server, connect_websocket(server.url) as conn:
            client = await _connected_client(server)
            await server.send_raw(text_frame("last") + close_frame(4000, "bye"), client)
            assert await conn.read_batch() == ["last"]
            with pytest.raises(WebSocketClosedError) as exc_info:
                await conn.read_batch()
            assert exc_info.value.code == 4000


async def test_an_owed_close_answer_is_sent_even_if_the_reading_task_is_being_cancelled() -> None:
    """Whoever reads (a manager's consumer reads the socket itself, under its own timeouts)
    sends the answers the peer is owed; a cancellation at that moment must not swallow them."""
    with anyio.fail_after(TIMEOUT):
        async with open_test_server(echo=False) as server, connect_websocket(server.url) as conn:
            client = await _connected_client(server)
            conn._reader.receive_data(close_frame(4000, "bye"))  # as if this read just got it
            with anyio.CancelScope() as scope:
                scope.cancel()
                await conn._handle_events()
            await client.wait_closed()
    assert (client.close_code, client.close_reason) == (4000, "bye")
