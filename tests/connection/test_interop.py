"""The connection against independent servers: ``websockets`` (asyncio) and ``trio-websocket`` (trio).

The ``peer_server`` fixture starts the server that runs on the current backend, so every test here
runs twice: asyncio against websockets, trio against trio-websocket. Both servers run the same
handler:

- ``/close/<code>``: close at once with ``<code>`` and reason "bye";
- ``/headers``: send the request headers as a JSON list of ``[name, value]``, then echo;
- ``/ping-me``: ping the client, wait for its pong, send "pong received", then echo;
- ``/fragmented/text`` and ``/fragmented/binary`` (websockets only): send one message in three
  fragments, then echo;
- anything else: echo every message back, unchanged and with the same type.

The server accepts the subprotocol "chat.v2" when offered, and adds ``X-Peer: <its name>`` to its
101 response. What the server saw of each connection is recorded in a :class:`PeerSession`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from functools import partial

import anyio
import pytest
import trio
from trio_websocket import ConnectionClosed as TrioConnectionClosed
from trio_websocket import WebSocketRequest, serve_websocket
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from managed_websocket import (
    WebSocketAbnormalClosureError,
    WebSocketClosedError,
    WebSocketConnection,
    WebSocketMessageTooBigError,
    connect_websocket,
)

pytestmark = pytest.mark.anyio

#: Upper bound for any one test; nothing here should take more than a fraction of it.
TIMEOUT = 10
#: The servers accept messages up to this size (the 1 MiB tests need more than their defaults).
SERVER_MAX_SIZE = 4 * 1024 * 1024
FRAGMENTS = ("frag", "ment", "ed")

Data = str | bytes


@dataclass
class PeerSession:
    """What the server saw of one connection."""

    path: str
    request_headers: list[tuple[str, str]]
    offered_subprotocols: list[str]
    subprotocol: str | None
    received: list[Data] = field(default_factory=list)
    #: The close code the server received from the client (1006: none).
    close_code: int | None = None
    done: anyio.Event = field(default_factory=anyio.Event)


@dataclass
class PeerControl:
    """The test's handle on the peer server."""

    name: str
    sessions: list[PeerSession] = field(default_factory=list)
    _changed: anyio.Event = field(default_factory=anyio.Event)

    def add(self, session: PeerSession) -> None:
        self.sessions.append(session)
        self._changed.set()
        self._changed = anyio.Event()

    async def session(self, index: int = 0) -> PeerSession:
        """The ``index``-th connection, once its handler has started."""
        while len(self.sessions) <= index:
            await self._changed.wait()
        return self.sessions[index]

    async def finished_session(self, index: int = 0) -> PeerSession:
        """The ``index``-th connection, once the server has seen it end."""
        session = await self.session(index)
        await session.done.wait()
        return session


def _select_subprotocol(offered: Sequence[str]) -> str | None:
    return "chat.v2" if "chat.v2" in offered else None


def _first_message(path: str) -> Data | list[Data] | None:
    """What the handler sends before echoing, if anything."""
    if path == "/fragmented/text":
        return list(FRAGMENTS)
    if path == "/fragmented/binary":
        return [chunk.encode() for chunk in FRAGMENTS]
    return None


def _close_code(path: str) -> int | None:
    if path.startswith("/close/"):
        return int(path.removeprefix("/close/"))
    return None


async def _websockets_handler(control: PeerControl, ws: ServerConnection) -> None:
    request = ws.request
    assert request is not None
    headers = [(name.lower(), value) for name, value in request.headers.raw_items()]
    offered = [
        token.strip()
        for value in request.headers.get_all("Sec-WebSocket-Protocol")
        for token in value.split(",")
    ]
    session = PeerSession(request.path, headers, offered, ws.subprotocol)
    control.add(session)
    try:
        code = _close_code(request.path)
        if code is not None:
            await ws.close(code, "bye")
            return
        if request.path == "/headers":
            await ws.send(json.dumps(headers))
        if request.path == "/ping-me":
            await (await ws.ping(b"from server"))  # waits for the client's pong
            await ws.send("pong received")
        first = _first_message(request.path)
        if first is not None:
            await ws.send(first)  # an iterable: one message, one fragment per item
        while True:
            message = await ws.recv()
            session.received.append(message)
            await ws.send(message)
    except ConnectionClosed as exc:
        session.close_code = exc.rcvd.code if exc.rcvd is not None else 1006
    finally:
        session.done.set()


def _websockets_select_subprotocol(
    ws: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    chosen = _select_subprotocol(offered)
    return None if chosen is None else Subprotocol(chosen)


def _add_peer_header(ws: ServerConnection, request: Request, response: Response) -> None:
    response.headers["X-Peer"] = "websockets"


async def _trio_websocket_handler(control: PeerControl, request: WebSocketRequest) -> None:
    subprotocol = _select_subprotocol(request.proposed_subprotocols)
    ws = await request.accept(
        subprotocol=subprotocol, extra_headers=[(b"X-Peer", b"trio-websocket")]
    )
    headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.headers]
    offered = list(request.proposed_subprotocols)
    session = PeerSession(request.path, headers, offered, ws.subprotocol)
    control.add(session)
    try:
        code = _close_code(request.path)
        if code is not None:
            await ws.aclose(code, "bye")
            return
        if request.path == "/headers":
            await ws.send_message(json.dumps(headers))
        if request.path == "/ping-me":
            await ws.ping(b"from server")  # waits for the client's pong
            await ws.send_message("pong received")
        while True:
            message = await ws.get_message()
            session.received.append(message)
            await ws.send_message(message)
    except TrioConnectionClosed as exc:
        session.close_code = exc.reason.code if exc.reason is not None else 1006
    finally:
        session.done.set()


@pytest.fixture
async def peer_server(anyio_backend: str) -> AsyncIterator[tuple[str, PeerControl]]:
    """An independent WebSocket server for the current backend: ``(base URL, control)``."""
    if anyio_backend == "asyncio":
        control = PeerControl("websockets")
        async with serve(
            partial(_websockets_handler, control),
            "127.0.0.1",
            0,
            select_subprotocol=_websockets_select_subprotocol,
            process_response=_add_peer_header,
            max_size=SERVER_MAX_SIZE,
            ping_interval=None,
            compression=None,
        ) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            yield f"ws://127.0.0.1:{port}", control
    else:
        control = PeerControl("trio-websocket")
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(
                    serve_websocket,
                    partial(_trio_websocket_handler, control),
                    "127.0.0.1",
                    0,
                    None,
                    max_message_size=SERVER_MAX_SIZE,
                )
            )
            yield f"ws://127.0.0.1:{server.port}", control
            nursery.cancel_scope.cancel()


# Echo


@pytest.mark.parametrize("message", ["héllo wörld ✓", b"\x00\xffbinary\x80"], ids=["text", "bytes"])
async def test_echo_keeps_the_message_and_its_type(
    peer_server: tuple[str, PeerControl], message: Data
) -> None:
    url, control = peer_server
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/echo") as conn:
            await conn.send(message)
            echoed = await conn.receive()
        session = await control.finished_session()

    assert type(echoed) is type(message)
    assert echoed == message
    # The server got the same type: bytes went out as a binary frame, str as a text frame.
    assert len(session.received) == 1
    assert type(session.received[0]) is type(message)
    assert session.received == [message]


@pytest.mark.parametrize("kind", ["text", "bytes"])
async def test_one_mebibyte_messages_both_ways(
    peer_server: tuple[str, PeerControl], kind: str
) -> None:
    url, control = peer_server
    size = 1024 * 1024
    message: Data = (
        ("0123456789abcdef" * (size // 16)) if kind == "text" else bytes(range(256)) * (size // 256)
    )
    assert len(message) == size
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/echo") as conn:
            await conn.send(message)
            echoed = await conn.receive()
        session = await control.finished_session()

    assert type(echoed) is type(message)
    assert echoed == message
    assert session.received == [message]
    assert conn.bytes_received > size
    assert conn.bytes_sent > size


@pytest.mark.parametrize("kind", ["text", "binary"])
async def test_fragmented_message_from_the_server_arrives_whole(
    peer_server: tuple[str, PeerControl], kind: str
) -> None:
    url, control = peer_server
    if control.name == "trio-websocket":
        pytest.skip("trio-websocket cannot send a fragmented message")
    expected: Data = "".join(FRAGMENTS) if kind == "text" else "".join(FRAGMENTS).encode()
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/fragmented/{kind}") as conn:
            message = await conn.receive()
            # The next message is not glued to the fragmented one.
            await conn.send("next")
            following = await conn.receive()

    assert type(message) is type(expected)
    assert message == expected
    assert following == "next"


# Handshake: subprotocols and headers


async def test_subprotocol_negotiated(peer_server: tuple[str, PeerControl]) -> None:
    url, control = peer_server
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/echo", subprotocols=["chat.v1", "chat.v2"]) as conn:
            assert conn.subprotocol == "chat.v2"
        session = await control.finished_session()

    assert session.subprotocol == "chat.v2"
    # Offered in the caller's order of preference.
    assert session.offered_subprotocols == ["chat.v1", "chat.v2"]


async def test_no_subprotocol_when_none_offered(peer_server: tuple[str, PeerControl]) -> None:
    url, _control = peer_server
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/echo") as conn:
            assert conn.subprotocol is None


async def test_extra_request_headers_reach_the_server(
    peer_server: tuple[str, PeerControl],
) -> None:
    url, control = peer_server
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(
            f"{url}/headers", headers={"X-Api-Key": "k-123", "X-Trace": "a b c"}
        ) as conn:
            raw = await conn.receive()

    assert isinstance(raw, str)
    received = [tuple(pair) for pair in json.loads(raw)]
    assert ("x-api-key", "k-123") in received
    assert ("x-trace", "a b c") in received
    if control.name == "websockets":  # trio-websocket does not show the Host header
        # The Host header names the port, as it is not the default one.
        port = url.rsplit(":", 1)[1]
        assert ("host", f"127.0.0.1:{port}") in received


async def test_extra_request_headers_as_pairs_keep_repeats(
    peer_server: tuple[str, PeerControl],
) -> None:
    url, _control = peer_server
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(
            f"{url}/headers", headers=[("X-Repeat", "one"), ("X-Repeat", "two")]
        ) as conn:
            raw = await conn.receive()

    assert isinstance(raw, str)
    received = [tuple(pair) for pair in json.loads(raw)]
    assert [value for name, value in received if name == "x-repeat"] == ["one", "two"]


async def test_response_headers_exposed(peer_server: tuple[str, PeerControl]) -> None:
    url, control = peer_server
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/echo") as conn:
            headers = conn.response_headers

    assert ("x-peer", control.name) in headers
    # wsproto keeps the handshake's own headers (upgrade, connection, sec-websocket-*) to itself:
    # what is exposed is every other header, names lower-cased.
    names = sorted(name for name, _value in headers)
    if control.name == "websockets":
        assert names == ["date", "server", "x-peer"]
    else:
        assert names == ["x-peer"]
    # A copy: changing it does not change the connection's.
    headers.clear()
    assert conn.response_headers != []


# Closing


async def test_server_initiated_close(peer_server: tuple[str, PeerControl]) -> None:
    url, _control = peer_server
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/close/4000") as conn:
            with pytest.raises(
                WebSocketClosedError,
                match=r"^connection closed by the server \(code 4000, reason 'bye'\)$",
            ) as exc_info:
                await conn.receive()
            assert conn.close_code == 4000
            assert conn.close_reason == "bye"
            assert not conn.is_open
            # Every later receive raises the same error.
            with pytest.raises(WebSocketClosedError) as again:
                await conn.receive()

    assert type(exc_info.value) is WebSocketClosedError
    assert exc_info.value.code == 4000
    assert exc_info.value.reason == "bye"
    assert again.value is exc_info.value
    assert conn.closed_error is exc_info.value
    assert conn.close_code == 4000


async def test_client_graceful_close_sends_1000(peer_server: tuple[str, PeerControl]) -> None:
    url, control = peer_server
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/echo") as conn:
            await conn.send("hi")
            assert await conn.receive() == "hi"
        session = await control.finished_session()

    assert session.close_code == 1000
    assert conn.close_code == 1000
    assert not conn.is_open
    assert type(conn.closed_error) is WebSocketClosedError


async def test_aclose_with_code_and_reason(peer_server: tuple[str, PeerControl]) -> None:
    url, control = peer_server
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/echo") as conn:
            await conn.aclose(4321, "done here")
            await conn.aclose()  # idempotent
            with pytest.raises(WebSocketClosedError) as exc_info:
                await conn.send("late")
        session = await control.finished_session()

    assert session.close_code == 4321
    assert exc_info.value.code == 4321
    assert conn.close_code == 4321


# Message size limit


async def test_message_at_the_limit_ok_over_it_fails_with_1009(
    peer_server: tuple[str, PeerControl],
) -> None:
    url, control = peer_server
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/echo", max_message_size=1000) as conn:
            await conn.send(b"x" * 1000)
            assert await conn.receive() == b"x" * 1000
            await conn.send(b"y" * 1001)
            with pytest.raises(
                WebSocketMessageTooBigError,
                match=r"^incoming message exceeds max_message_size=1000 \(closed with 1009\)$",
            ) as exc_info:
                await conn.receive()
            assert not conn.is_open
            assert conn.close_code == 1009
        session = await control.finished_session()

    assert exc_info.value.code == 1009
    assert exc_info.value.limit == 1000
    assert session.close_code == 1009


async def test_text_message_over_the_limit_fails_with_1009(
    peer_server: tuple[str, PeerControl],
) -> None:
    url, control = peer_server
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/echo", max_message_size=1000) as conn:
            await conn.send("z" * 1000)
            assert await conn.receive() == "z" * 1000
            await conn.send("z" * 1001)
            with pytest.raises(WebSocketMessageTooBigError):
                await conn.receive()
        session = await control.finished_session()

    assert session.close_code == 1009


# Ping


async def test_ping_reads_the_pong_itself(peer_server: tuple[str, PeerControl]) -> None:
    url, _control = peer_server
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/echo") as conn:
            await conn.send("before")  # its echo arrives while ping() reads; it is kept
            rtt = await conn.ping()
            assert await conn.receive() == "before"
            rtt2 = await conn.ping(b"custom")

    assert isinstance(rtt, float)
    assert 0 < rtt < 1.0
    assert 0 < rtt2 < 1.0


async def test_ping_while_another_task_is_blocked_in_receive(
    peer_server: tuple[str, PeerControl],
) -> None:
    url, _control = peer_server
    received: list[Data] = []

    async def reader(conn: WebSocketConnection) -> None:
        received.append(await conn.receive())

    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/echo") as conn:
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader, conn)
                await anyio.wait_all_tasks_blocked()
                rtt = await conn.ping()
                assert received == []  # the reader is still waiting
                await conn.send("after ping")
            assert received == ["after ping"]

    assert isinstance(rtt, float)
    assert 0 < rtt < 1.0


async def test_send_ping_reports_the_round_trip_to_its_callback(
    peer_server: tuple[str, PeerControl],
) -> None:
    """send_ping() returns at once; whoever reads the pong (here receive()) calls back."""
    url, _control = peer_server
    rtts: list[float] = []
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/echo") as conn:
            await conn.send_ping(rtts.append)
            await conn.send_ping(rtts.append)
            assert rtts == []
            await conn.send("after the pings")
            assert await conn.receive() == "after the pings"
            assert conn._pong_waiters == {}  # answered waiters are removed by the reader
    assert len(rtts) == 2
    assert all(0 < rtt < 1.0 for rtt in rtts)


async def test_read_batch_returns_nothing_at_its_deadline(
    peer_server: tuple[str, PeerControl],
) -> None:
    url, _control = peer_server
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/echo") as conn:
            assert await conn.read_batch(anyio.current_time() + 0.05) == []
            await conn.send("still there")
            assert await conn.read_batch(anyio.current_time() + TIMEOUT) == ["still there"]


async def test_ping_on_a_closed_connection_raises(peer_server: tuple[str, PeerControl]) -> None:
    url, _control = peer_server
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/echo") as conn:
            await conn.aclose()
            with pytest.raises(WebSocketClosedError) as exc_info:
                await conn.ping()
    assert exc_info.value.code == 1000
    assert not isinstance(exc_info.value, WebSocketAbnormalClosureError)


async def test_client_answers_the_servers_ping(peer_server: tuple[str, PeerControl]) -> None:
    url, _control = peer_server
    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/ping-me") as conn:
            # The ping is not a message: the first message is the one sent after the pong.
            assert await conn.receive() == "pong received"


# Concurrency


async def test_concurrent_senders_all_arrive_intact(peer_server: tuple[str, PeerControl]) -> None:
    url, control = peer_server
    senders, per_sender = 20, 50
    received: list[Data] = []

    async def sender(conn: WebSocketConnection, n: int) -> None:
        for i in range(per_sender):
            text = f"{n}:{i}:" + "p" * (n * 37)  # different sizes, so frames would show tearing
            await conn.send(text if n % 2 == 0 else text.encode())

    with anyio.fail_after(TIMEOUT):
        async with connect_websocket(f"{url}/echo") as conn, anyio.create_task_group() as tg:
            for n in range(senders):
                tg.start_soon(sender, conn, n)
            while len(received) < senders * per_sender:
                received.extend(await conn.receive_batch())
        session = await control.finished_session()

    assert len(received) == senders * per_sender
    # The server got exactly what came back, in the same order.
    assert session.received == received
    by_sender: dict[int, list[int]] = {}
    for message in received:
        text = message if isinstance(message, str) else message.decode()
        n_str, i_str, padding = text.split(":")
        n = int(n_str)
        assert isinstance(message, str) == (n % 2 == 0)
        assert padding == "p" * (n * 37)
        by_sender.setdefault(n, []).append(int(i_str))
    # Each sender's messages arrived in the order it sent them, none lost or duplicated.
    assert by_sender == {n: list(range(per_sender)) for n in range(senders)}
