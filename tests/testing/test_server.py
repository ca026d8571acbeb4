"""Tests for managed_websocket.testing: real sockets, clients independent of the server."""

from __future__ import annotations

import ssl
import struct

import anyio
import pytest
import trustme
from trio.testing import MockClock

from managed_websocket.testing import ClientRecord, open_test_server

from ._clients import (
    ClientClosedError,
    connect,
    masked_frame,
    raw_connect,
    raw_read_until_eof,
    raw_upgrade,
)

pytestmark = pytest.mark.anyio

#: Upper bound for any wait in these tests; they normally take milliseconds.
WAIT = 5


def close_frame(code: int, reason: bytes = b"") -> bytes:
    """An unmasked close frame, as a server sends it."""
    payload = struct.pack("!H", code) + reason
    return bytes([0x88, len(payload)]) + payload


# -- Normal service -------------------------------------------------------------------------------


async def test_echoes_text_and_binary_messages(anyio_backend_name: str) -> None:
    async with open_test_server() as server, connect(anyio_backend_name, server.url) as client:
        await client.send("hello")
        await client.send(b"\x00\x01")
        with anyio.fail_after(WAIT):
            assert await client.recv() == "hello"
            assert await client.recv() == b"\x00\x01"
        [record] = server.clients
        assert record.messages == ["hello", b"\x00\x01"]
        assert record.handshake_completed
        assert record.ended_by is None


async def test_does_not_echo_when_echo_is_off(anyio_backend_name: str) -> None:
    async with (
        open_test_server(echo=False) as server,
        connect(anyio_backend_name, server.url) as client,
    ):
        await client.send("one")
        with anyio.fail_after(WAIT):
            await server.wait_for_messages(1)
        await server.broadcast("from server")
        with anyio.fail_after(WAIT):
            assert await client.recv() == "from server"


async def test_chooses_first_offered_subprotocol_the_server_supports(
    anyio_backend_name: str,
) -> None:
    async with (
        open_test_server(subprotocols=["v2", "v1"]) as server,
        connect(anyio_backend_name, server.url, subprotocols=["v3", "v1", "v2"]) as client,
    ):
        assert client.subprotocol == "v1"
        assert server.clients[0].subprotocol == "v1"


async def test_records_path_and_request_headers_and_sends_response_headers(
    anyio_backend_name: str,
) -> None:
    async with (
        open_test_server(response_headers=[("X-Server", "scripted")]) as server,
        connect(
            anyio_backend_name, server.url + "/feed?x=1", headers=[("X-Api-Key", "k1")]
        ) as client,
    ):
        assert client.response_header("x-server") == "scripted"
        [record] = server.clients
        assert record.path == "/feed?x=1"
        assert ("x-api-key", "k1") in record.request_headers
        assert record.header("Host") == f"127.0.0.1:{server.port}"
        assert record.header("upgrade") == "websocket"
        assert all(name == name.lower() for name, _ in record.request_headers)


async def test_answers_and_counts_pings(anyio_backend_name: str) -> None:
    async with open_test_server() as server, connect(anyio_backend_name, server.url) as client:
        with anyio.fail_after(WAIT):
            await client.ping()
        assert server.clients[0].pings_received == 1


async def test_broadcast_reaches_every_open_client(anyio_backend_name: str) -> None:
    async with (
        open_test_server() as server,
        connect(anyio_backend_name, server.url) as first,
        connect(anyio_backend_name, server.url) as second,
    ):
        with anyio.fail_after(WAIT):
            await server.wait_for_handshakes(2)
            assert await server.broadcast("tick") == 2
            assert await first.recv() == "tick"
            assert await second.recv() == "tick"


@pytest.mark.parametrize("hook_kind", ["async", "sync"])
async def test_on_handshake_hook_runs_before_client_messages(
    anyio_backend_name: str, hook_kind: str
) -> None:
    async with open_test_server() as server:
        seen: list[ClientRecord] = []

        async def greet(record: ClientRecord) -> None:
            await server.send(record, f"welcome {record.index}")

        if hook_kind == "async":
            server.on_handshake(greet)
        else:
            server.on_handshake(seen.append)
        async with connect(anyio_backend_name, server.url) as client:
            await client.send("hi")
            with anyio.fail_after(WAIT):
                if hook_kind == "async":
                    assert await client.recv() == "welcome 0"
                assert await client.recv() == "hi"
        assert seen == ([server.clients[0]] if hook_kind == "sync" else [])


async def test_client_close_is_recorded(anyio_backend_name: str) -> None:
    async with open_test_server() as server:
        async with connect(anyio_backend_name, server.url) as client:
            await client.close(4001, "done")
        [record] = server.clients
        with anyio.fail_after(WAIT):
            await record.wait_closed()
        assert (record.close_code, record.close_reason) == (4001, "done")
        assert record.ended_by == "client_close"
        assert server.live_clients == []


async def test_client_eof_is_recorded() -> None:
    async with open_test_server() as server:
        stream = await raw_connect(server.port)
        await raw_upgrade(stream, server.port)
        await stream.aclose()
        [record] = server.clients
        with anyio.fail_after(WAIT):
            await record.wait_closed()
        assert record.ended_by == "client_eof"
        assert record.close_code is None


async def test_wait_messages_fails_fast_when_the_client_is_gone() -> None:
    async with open_test_server() as server:
        stream = await raw_connect(server.port)
        await raw_upgrade(stream, server.port)
        await stream.send(masked_frame(0x1, b"only one"))
        await stream.aclose()
        with anyio.fail_after(WAIT), pytest.raises(RuntimeError, match=r"^client 0 closed after 1"):
            await server.clients[0].wait_messages(2)


async def test_client_protocol_violation_fails_the_connection_with_1002() -> None:
    async with open_test_server() as server:
        stream = await raw_connect(server.port)
        async with stream:
            await raw_upgrade(stream, server.port)
            await stream.send(b"\x81\x02hi")  # client frames must be masked
            with anyio.fail_after(WAIT):
                assert await raw_read_until_eof(stream) == close_frame(1002)
        assert server.clients[0].ended_by == "server_close"


# -- Faults on live connections -------------------------------------------------------------------


async def test_close_clients_sends_code_and_reason(anyio_backend_name: str) -> None:
    async with open_test_server() as server, connect(anyio_backend_name, server.url) as client:
        with anyio.fail_after(WAIT):
            await server.wait_for_handshakes(1)
            await server.close_clients(4000, "maintenance")
            assert await client.wait_close_code() == 4000
        [record] = server.clients
        assert record.closed
        assert record.ended_by == "server_close"
        assert record.close_code == 4000  # the client's answer echoes our code


async def test_close_clients_raw_bytes_and_bounded_wait() -> None:
    async with open_test_server() as server:
        stream = await raw_connect(server.port)
        async with stream:
            await raw_upgrade(stream, server.port)
            with anyio.fail_after(WAIT):
                # The raw client never answers: the server gives up after close_timeout.
                await server.close_clients(4000, "bye", close_timeout=0.1)
                assert await raw_read_until_eof(stream) == close_frame(4000, b"bye")
        assert server.clients[0].close_code is None


async def test_drop_clients_closes_tcp_without_close_frame(anyio_backend_name: str) -> None:
    async with open_test_server() as server, connect(anyio_backend_name, server.url) as client:
        with anyio.fail_after(WAIT):
            await server.wait_for_handshakes(1)
            await server.drop_clients()
            assert await client.wait_close_code() == 1006
        assert server.clients[0].ended_by == "server_drop"
        assert server.live_clients == []


async def test_drop_clients_sends_fin() -> None:
    async with open_test_server() as server:
        stream = await raw_connect(server.port)
        async with stream:
            await raw_upgrade(stream, server.port)
            await server.drop_clients()
            with anyio.fail_after(WAIT), pytest.raises(anyio.EndOfStream):
                await stream.receive()


async def test_reset_clients_sends_rst() -> None:
    async with open_test_server() as server:
        stream = await raw_connect(server.port)
        async with stream:
            await raw_upgrade(stream, server.port)
            await server.reset_clients()
            with (
                anyio.fail_after(WAIT),
                pytest.raises((anyio.BrokenResourceError, ConnectionResetError)),
            ):
                await stream.receive()
        assert server.clients[0].ended_by == "server_reset"


async def test_faults_act_on_the_given_client_only(anyio_backend_name: str) -> None:
    async with (
        open_test_server() as server,
        connect(anyio_backend_name, server.url) as first,
        connect(anyio_backend_name, server.url) as second,
    ):
        with anyio.fail_after(WAIT):
            await server.wait_for_handshakes(2)
            await server.drop_clients(client=server.clients[0])
            assert await first.wait_close_code() == 1006
            assert server.live_clients == [server.clients[1]]
            assert await server.send(server.clients[0], "gone") is False
            await second.send("still here")
            assert await second.recv() == "still here"


async def test_silenced_client_gets_no_pong_and_no_echo(anyio_backend_name: str) -> None:
    async with open_test_server() as server, connect(anyio_backend_name, server.url) as client:
        with anyio.fail_after(WAIT):
            await server.wait_for_handshakes(1)
        server.silence_clients()
        with anyio.move_on_after(0.5) as scope:
            await client.ping()
        assert scope.cancelled_caught
        assert await server.broadcast("nobody listens") == 0
        [record] = server.clients
        assert server.live_clients == [record]
        assert record.pings_received == 0
        with anyio.fail_after(WAIT):
            await server.drop_clients()
        assert record.closed


async def test_send_raw_writes_bytes_verbatim() -> None:
    async with open_test_server() as server:
        stream = await raw_connect(server.port)
        async with stream:
            await raw_upgrade(stream, server.port)
            assert await server.send_raw(b"\x81\x02hi\x8f\x00") == 1  # then a reserved opcode
            with anyio.fail_after(WAIT):
                received = b""
                while len(received) < 6:
                    received += await stream.receive()
            assert received == b"\x81\x02hi\x8f\x00"


# -- Faults for future connections ----------------------------------------------------------------


async def test_refuse_handshakes_answers_with_status_headers_and_body() -> None:
    async with open_test_server() as server:
        server.refuse_handshakes(503, [("Retry-After", "7")], body=b"busy")
        stream = await raw_connect(server.port)
        async with stream:
            await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
            await stream.send(
                b"Connection: Upgrade\r\nSec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5a2==\r\n"
            )
            await stream.send(b"Sec-WebSocket-Version: 13\r\n\r\n")
            with anyio.fail_after(WAIT):
                response = await raw_read_until_eof(stream)
        assert response.startswith(b"HTTP/1.1 503")
        assert b"\r\nretry-after: 7\r\n" in response.lower()
        assert response.endswith(b"\r\n\r\nbusy")
        [record] = server.clients
        assert record.ended_by == "refused"
        assert not record.handshake_completed


async def test_faults_queue_up_then_service_returns_to_normal(anyio_backend_name: str) -> None:
    async with open_test_server() as server:
        server.refuse_handshakes(429, count=2)
        server.stall_handshakes()
        heads = []
        for _ in range(2):
            stream = await raw_connect(server.port)
            async with stream:
                heads.append((await raw_upgrade(stream, server.port)).split(b"\r\n")[0])
        assert heads == [b"HTTP/1.1 429 ", b"HTTP/1.1 429 "]
        stream = await raw_connect(server.port)
        async with stream:
            await stream.send(b"GET /x HTTP/1.1\r\n\r\n")  # invalid upgrade, still stalled
            with anyio.fail_after(WAIT):
                await server.wait_for_connections(3)
        async with connect(anyio_backend_name, server.url) as client:
            await client.send("normal")
            with anyio.fail_after(WAIT):
                assert await client.recv() == "normal"
        assert [r.ended_by for r in server.clients] == [
            "refused",
            "refused",
            "stalled",
            "client_close",
        ]


async def test_refuse_until_cleared() -> None:
    async with open_test_server() as server:
        server.refuse_handshakes(500, count=None)
        for _ in range(3):
            stream = await raw_connect(server.port)
            async with stream:
                assert (await raw_upgrade(stream, server.port)).startswith(b"HTTP/1.1 500")
        server.clear_faults()
        stream = await raw_connect(server.port)
        async with stream:
            assert (await raw_upgrade(stream, server.port)).startswith(b"HTTP/1.1 101")


@pytest.mark.parametrize(("code", "seen"), [(4002, 4002), (None, 1006)])
async def test_flap_accepts_then_closes_at_once(
    anyio_backend_name: str, code: int | None, seen: int
) -> None:
    async with open_test_server() as server:
        server.flap(code=code)
        async with connect(anyio_backend_name, server.url) as client:
            with anyio.fail_after(WAIT), pytest.raises(ClientClosedError) as caught:
                await client.recv()
            assert caught.value.code == seen
        first = server.clients[0]
        assert first.handshake_completed
        assert first.ended_by == ("server_close" if code else "server_drop")
        async with connect(anyio_backend_name, server.url) as client:
            await client.send("steady")
            with anyio.fail_after(WAIT):
                assert await client.recv() == "steady"


async def test_stall_reads_the_request_and_never_answers() -> None:
    async with open_test_server() as server:
        server.stall_handshakes()
        stream = await raw_connect(server.port)
        async with stream:
            await stream.send(
                b"GET /slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5a2==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            with anyio.move_on_after(0.3) as scope:
                await stream.receive()
            assert scope.cancelled_caught
        [record] = server.clients
        with anyio.fail_after(WAIT):
            await record.wait_closed()
        assert (record.path, record.ended_by, record.handshake_completed) == (
            "/slow",
            "stalled",
            False,
        )


# -- Lifetime -------------------------------------------------------------------------------------


async def test_exit_closes_every_socket_and_stops_listening() -> None:
    async with open_test_server() as server:
        port = server.port
        upgraded = await raw_connect(port)
        await raw_upgrade(upgraded, port)
        bare = await raw_connect(port)
        with anyio.fail_after(WAIT):
            await server.wait_for_connections(2)
    try:
        assert [r.closed for r in server.clients] == [True, True]
        assert [r.ended_by for r in server.clients] == ["server_drop", "server_drop"]
        assert server.live_clients == []
        for stream in (upgraded, bare):
            with anyio.fail_after(WAIT):
                assert await raw_read_until_eof(stream) == b""
        with pytest.raises(OSError, match=r"^All connection attempts failed$"):  # anyio's words
            await anyio.connect_tcp("127.0.0.1", port)
    finally:
        await upgraded.aclose()
        await bare.aclose()


async def test_exceptions_from_the_block_come_out_unwrapped() -> None:
    with pytest.raises(ZeroDivisionError):
        async with open_test_server():
            1 / 0  # noqa: B018


async def test_url_and_port_need_a_running_server() -> None:
    server = open_test_server()
    with pytest.raises(RuntimeError, match=r"^the server is not running"):
        _ = server.url


async def test_rejects_records_of_another_server() -> None:
    async with open_test_server() as first, open_test_server() as second:
        stream = await raw_connect(first.port)
        async with stream:
            with anyio.fail_after(WAIT):
                await first.wait_for_connections(1)
            with pytest.raises(ValueError, match=r"is not a client of this server$"):
                await second.send(first.clients[0], "x")


async def test_serves_wss(anyio_backend_name: str) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(client_context)
    async with open_test_server(ssl_context=server_context) as server:
        assert server.url.startswith("wss://127.0.0.1:")
        async with connect(anyio_backend_name, server.url, ssl_context=client_context) as client:
            await client.send("secret")
            with anyio.fail_after(WAIT):
                assert await client.recv() == "secret"
            await server.close_clients(4000)
            with anyio.fail_after(WAIT):
                assert await client.wait_close_code() == 4000


@pytest.mark.parametrize("anyio_backend", [("trio", {"clock": MockClock(autojump_threshold=0)})])
async def test_runs_under_trio_mock_clock() -> None:
    async with open_test_server() as server:
        server.stall_handshakes()
        stream = await raw_connect(server.port)
        async with stream:
            await raw_upgrade_request_only(stream, server.port)
            with anyio.move_on_after(30) as scope:  # virtual time: instant
                await stream.receive()
            assert scope.cancelled_caught
        async with connect("trio", server.url) as client:
            await client.send("tick")
            assert await client.recv() == "tick"
            await server.close_clients(4000)
            assert await client.wait_close_code() == 4000


async def raw_upgrade_request_only(stream: anyio.abc.SocketStream, port: int) -> None:
    await stream.send(
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: a2V5a2V5a2V5a2V5a2V5a2==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )


@pytest.mark.parametrize("hook_kind", ["sync", "async"])
async def test_on_message_hook_sees_each_message_before_the_echo(
    anyio_backend_name: str, hook_kind: str
) -> None:
    async with open_test_server() as server:
        seen: list[tuple[int, str | bytes]] = []

        async def answer(record: ClientRecord, message: str | bytes) -> None:
            await server.send(record, f"answer to {message!r}")

        if hook_kind == "async":
            server.on_message(answer)
        else:
            server.on_message(lambda record, message: seen.append((record.index, message)))
        async with connect(anyio_backend_name, server.url) as client:
            await client.send("q1")
            await client.send(b"q2")
            with anyio.fail_after(WAIT):
                if hook_kind == "async":
                    assert await client.recv() == "answer to 'q1'"
                assert await client.recv() == "q1"  # then the echo
                if hook_kind == "async":
                    assert await client.recv() == "answer to b'q2'"
                assert await client.recv() == b"q2"
        assert seen == ([(0, "q1"), (0, b"q2")] if hook_kind == "sync" else [])


@pytest.mark.parametrize("verdict", [True, None, False, 403])
async def test_authorize_accepts_or_refuses_before_the_upgrade(verdict: bool | int | None) -> None:
    async with open_test_server() as server:
        checked: list[str | None] = []

        async def check(record: ClientRecord) -> bool | int | None:
            checked.append(record.header("authorization"))
            return verdict

        server.authorize(check)
        stream = await raw_connect(server.port)
        async with stream:
            head = (await raw_upgrade(stream, server.port)).split(b"\r\n")[0]
        expected = {True: b"101", None: b"101", False: b"401", 403: b"403"}[verdict]
        assert head.startswith(b"HTTP/1.1 " + expected)
        assert checked == [None]
        assert server.clients[0].handshake_completed is (expected == b"101")
