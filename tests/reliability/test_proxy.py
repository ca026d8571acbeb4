"""The TCP fault proxy (``managed_websocket.testing.open_fault_proxy``) in front of a plain echo.

Each fault is switched on while a connection is open and checked from both ends: what the client
reads, and what the echo server saw (``EchoServer.ends``: ``"eof"`` or ``"reset"`` per connection).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketStream
from trio.testing import MockClock

from managed_websocket.testing import FaultProxy, open_fault_proxy

pytestmark = pytest.mark.anyio

#: Upper bound for every wait here; each normally takes milliseconds.
WAIT = 10.0


class EchoServer:
    """A TCP echo server: echoes until EOF, then closes; records how each connection ended."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ends: list[str] = []
        self.accepted = 0
        self._changed = anyio.Event()

    async def handle(self, stream: SocketStream) -> None:
        self.accepted += 1
        end = "eof"
        async with stream:
            try:
                while True:
                    await stream.send(await stream.receive())
            except anyio.EndOfStream:
                end = "eof"
            except (anyio.BrokenResourceError, OSError):
                end = "reset"
        self.ends.append(end)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_ends(self, n: int) -> None:
        while len(self.ends) < n:
            await self._changed.wait()


@asynccontextmanager
async def echo_server() -> AsyncIterator[EchoServer]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tg:
        server = EchoServer(listener.extra(anyio.abc.SocketAttribute.local_port))
        tg.start_soon(listener.serve, server.handle, tg)
        yield server
        tg.cancel_scope.cancel()


@asynccontextmanager
async def echo_behind_proxy() -> AsyncIterator[tuple[EchoServer, FaultProxy]]:
    async with echo_server() as server, open_fault_proxy("127.0.0.1", server.port) as proxy:
        yield server, proxy


async def connect(proxy: FaultProxy) -> SocketStream:
    return await anyio.connect_tcp("127.0.0.1", proxy.port)


async def is_refused(port: int) -> bool:
    """Whether a connection to ``port`` is refused (RST to the SYN)."""
    try:
        stream = await anyio.connect_tcp("127.0.0.1", port)
    except OSError as exc:  # anyio wraps the error of each address it tried
        return isinstance(exc.__cause__ or exc, ConnectionRefusedError)
    await stream.aclose()
    return False


async def receive_exactly(stream: SocketStream, n: int) -> bytes:
    data = b""
    while len(data) < n:
        data += await stream.receive()
    return data


async def round_trip(stream: SocketStream, payload: bytes = b"ping") -> float:
    started = anyio.current_time()
    await stream.send(payload)
    assert await receive_exactly(stream, len(payload)) == payload
    return anyio.current_time() - started


async def test_forwards_both_ways_and_counts() -> None:
    with anyio.fail_after(WAIT):
        async with echo_behind_proxy() as (server, proxy):
            assert proxy.url_for("ws") == f"ws://127.0.0.1:{proxy.port}/ws"
            assert proxy.url_for("/a?b=1") == f"ws://127.0.0.1:{proxy.port}/a?b=1"
            payload = bytes(range(256)) * 1000
            async with await connect(proxy) as a, await connect(proxy) as b:
                await a.send(payload)
                assert await receive_exactly(a, len(payload)) == payload
                await round_trip(b, b"hello")
                assert proxy.active_connections == 2
            assert proxy.counters.connections_accepted == 2
            assert proxy.counters.bytes_to_server == len(payload) + 5
            assert proxy.counters.bytes_to_client == len(payload) + 5
            await server.wait_ends(2)  # the clients' FIN reached the server
            assert server.ends == ["eof", "eof"]
            await wait_until(lambda: proxy.active_connections == 0)


async def test_half_close_travels_through() -> None:
    with anyio.fail_after(WAIT):
        async with echo_behind_proxy() as (server, proxy), await connect(proxy) as client:
            await client.send(b"last words")
            await client.send_eof()
            assert await receive_exactly(client, 10) == b"last words"
            with pytest.raises(anyio.EndOfStream):  # the echo closed after our EOF
                await client.receive()
            await server.wait_ends(1)
            assert server.ends == ["eof"]


async def test_latency_delays_each_direction() -> None:
    with anyio.fail_after(WAIT):
        async with echo_behind_proxy() as (_, proxy), await connect(proxy) as client:
            assert await round_trip(client) < 0.1
            proxy.set_latency(0.1)
            assert proxy.latency == 0.1
            assert await round_trip(client) >= 0.2 - 0.005
            proxy.set_latency(0)
            assert await round_trip(client) < 0.1


async def test_latency_does_not_serialise_chunks() -> None:
    # Ten chunks sent 20 ms apart arrive about 20 ms apart, each delayed once: a pipe, not a queue
    # of sleeps (which would take 10 x 2 x latency).
    with anyio.fail_after(WAIT):
        async with echo_behind_proxy() as (_, proxy), await connect(proxy) as client:
            proxy.set_latency(0.15)
            started = anyio.current_time()
            for _ in range(10):
                await client.send(b"x")
                await anyio.sleep(0.02)
            await receive_exactly(client, 10)
            elapsed = anyio.current_time() - started
            assert 0.3 <= elapsed < 1.5


@pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": MockClock(autojump_threshold=0.02)}), id="trio-mockclock")],
)
async def test_latency_runs_on_trios_mock_clock(anyio_backend: object) -> None:
    # The proxy measures time with anyio.sleep only, so a virtual clock drives it: half a minute
    # of latency each way takes a minute of virtual time and no real time. (The clock jumps only
    # after 20 ms with every task idle, so it does not jump while bytes cross the loopback.)
    started = time.monotonic()
    async with echo_behind_proxy() as (_, proxy), await connect(proxy) as client:
        proxy.set_latency(30.0)
        assert await round_trip(client) >= 60.0
    assert time.monotonic() - started < WAIT


async def test_bandwidth_cap() -> None:
    with anyio.fail_after(WAIT):
        async with echo_behind_proxy() as (_, proxy), await connect(proxy) as client:
            proxy.set_bandwidth(100_000)
            payload = b"z" * 50_000  # 0.5 s at 100 kB/s (the two directions overlap)
            started = anyio.current_time()
            await client.send(payload)
            await receive_exactly(client, len(payload))
            elapsed = anyio.current_time() - started
            assert 0.4 <= elapsed < 3.0
            proxy.set_bandwidth(None)
            assert await round_trip(client, payload) < 0.3


async def test_blackhole_holds_everything_and_restore_delivers_it() -> None:
    with anyio.fail_after(WAIT):
        async with echo_behind_proxy() as (server, proxy), await connect(proxy) as client:
            await round_trip(client)
            proxy.blackhole()
            assert proxy.is_blackholed
            sent_before = proxy.counters.bytes_to_server
            await client.send(b"into the void")
            with anyio.move_on_after(0.3) as waited:
                await client.receive()
            assert waited.cancelled_caught  # nothing came back, and the socket is still open
            assert proxy.counters.bytes_to_server == sent_before
            assert proxy.active_connections == 1
            assert server.ends == []
            proxy.restore()
            assert await receive_exactly(client, 13) == b"into the void"


async def test_blackhole_holds_a_half_close_too() -> None:
    with anyio.fail_after(WAIT):
        async with echo_behind_proxy() as (server, proxy), await connect(proxy) as client:
            proxy.blackhole()
            await client.send_eof()
            await anyio.sleep(0.2)
            assert server.ends == []  # the FIN did not get through
            proxy.restore()
            await server.wait_ends(1)
            assert server.ends == ["eof"]


async def test_blackhole_holds_a_reset_too() -> None:
    with anyio.fail_after(WAIT):
        async with echo_behind_proxy() as (server, proxy):
            client = await connect(proxy)
            await round_trip(client)
            proxy.blackhole()
            raw = client.extra(anyio.abc.SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await client.aclose()  # RST
            await anyio.sleep(0.2)
            assert server.ends == []  # the partition holds it
            proxy.restore()
            await server.wait_ends(1)
            assert server.ends == ["reset"]


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_cut_closes_both_sides(reset: bool) -> None:
    with anyio.fail_after(WAIT):
        async with echo_behind_proxy() as (server, proxy), await connect(proxy) as client:
            await round_trip(client)
            assert await proxy.cut(reset=reset) == 1
            assert proxy.active_connections == 0
            if reset:
                with pytest.raises((anyio.BrokenResourceError, OSError)):
                    await client.receive()
            else:
                with pytest.raises(anyio.EndOfStream):
                    await client.receive()
            await server.wait_ends(1)
            assert server.ends == ["reset" if reset else "eof"]
            # The proxy still serves new connections.
            async with await connect(proxy) as again:
                await round_trip(again)


async def test_cut_while_blackholed() -> None:
    with anyio.fail_after(WAIT):
        async with echo_behind_proxy() as (server, proxy), await connect(proxy) as client:
            await wait_until(lambda: proxy.active_connections == 1)  # accepted by the proxy
            proxy.blackhole()
            await client.send(b"stuck")
            assert await proxy.cut() == 1
            with pytest.raises(anyio.EndOfStream):
                await client.receive()
            await server.wait_ends(1)


async def test_refuse_new_by_closing_at_once() -> None:
    with anyio.fail_after(WAIT):
        async with echo_behind_proxy() as (server, proxy), await connect(proxy) as old:
            await proxy.refuse_new(True)
            async with await connect(proxy) as refused:
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await refused.receive()
            assert proxy.counters.connections_refused == 1
            await round_trip(old)  # existing connections are not touched
            await proxy.refuse_new(False)
            async with await connect(proxy) as fresh:
                await round_trip(fresh)
            assert server.accepted == 2  # the refused one never reached the server


async def test_refuse_new_by_not_listening() -> None:
    with anyio.fail_after(WAIT):
        async with echo_behind_proxy() as (server, proxy), await connect(proxy) as old:
            port = proxy.port
            await proxy.refuse_new(True, stop_listening=True)
            assert await is_refused(proxy.port)
            await round_trip(old)
            await proxy.refuse_new(False)
            assert proxy.port == port
            async with await connect(proxy) as fresh:
                await round_trip(fresh)
            assert server.accepted == 2


async def test_unreachable_target_resets_the_client() -> None:
    with anyio.fail_after(WAIT):
        async with echo_server() as server:
            port = server.port
        # The echo is gone: its port refuses.
        async with open_fault_proxy("127.0.0.1", port) as proxy, await connect(proxy) as client:
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, OSError)):
                await client.receive()
            await wait_until(lambda: proxy.counters.connections_failed == 1)


async def test_exit_closes_every_connection() -> None:
    with anyio.fail_after(WAIT):
        async with echo_server() as server:
            async with open_fault_proxy("127.0.0.1", server.port) as proxy:
                client = await connect(proxy)
                await round_trip(client)
                proxy.blackhole()  # even a held connection goes
            async with client:
                with pytest.raises(anyio.EndOfStream):
                    await client.receive()
            await server.wait_ends(1)
            assert await is_refused(proxy.port)


async def test_bad_settings_are_refused() -> None:
    async with echo_behind_proxy() as (_, proxy):
        for bad in (-1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="latency"):
                proxy.set_latency(bad)
        for bad in (0.0, -5.0, float("nan")):
            with pytest.raises(ValueError, match="bandwidth"):
                proxy.set_bandwidth(bad)
    with pytest.raises(RuntimeError, match="not running"):
        _ = open_fault_proxy("127.0.0.1", 1).port


async def wait_until(predicate: object, interval: float = 0.005) -> None:
    assert callable(predicate)
    while not predicate():  # noqa: ASYNC110 - nothing signals these counters
        await anyio.sleep(interval)
