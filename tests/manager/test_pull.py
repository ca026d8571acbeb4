"""A waiting consumer reads the socket itself (Session.pull), on both backends.

When the inbox is empty, the consumer's task reads the primary connection and takes what comes,
instead of waiting for the receive loop's task to read it and hand it over (one trip through the
event loop per socket read). The receive loop gives way meanwhile and reads in the background
again once no consumer has pulled for ``PULL_GRACE``. These tests pin down that hand-over: who
reads, that the receive loop comes back, and that nothing is lost or held up on the way.
"""

from __future__ import annotations

import json
import math
from typing import Any

import anyio
import anyio.abc
import pytest

from managed_websocket import DisconnectReason, ManagedWebSocket, WebSocketConnection
from managed_websocket._manager._session import PULL_GRACE
from managed_websocket.testing import WebSocketTestServer, open_test_server
from reliability._support import library_tasks

from ._harness import WAIT, manager, server_frame, wait_until

pytestmark = pytest.mark.anyio


async def test_echo_round_trips_are_read_by_the_consumer_not_the_receive_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with open_test_server() as server, manager(server, ping_interval=None) as ws:
        readers: list[int] = []
        read_batch = WebSocketConnection.read_batch

        async def recording_read_batch(
            conn: WebSocketConnection, deadline: float = math.inf
        ) -> list[str | bytes]:
            readers.append(anyio.get_current_task().id)
            return await read_batch(conn, deadline)

        with anyio.fail_after(WAIT):
            messages = aiter(ws)
            await ws.send("warm-up")  # the receive loop was reading when we started
            assert await anext(messages) == "warm-up"
            monkeypatch.setattr(WebSocketConnection, "read_batch", recording_read_batch)
            for n in range(100):
                await ws.send(f"m{n}")
                assert await anext(messages) == f"m{n}"
        me = anyio.get_current_task().id
        by_loop = sum(reader != me for reader in readers)
        # Each round trip was read by this task. The receive loop reads only if the consumer was
        # away for PULL_GRACE (a stall of this machine), and then gives way again at once.
        assert len(readers) - by_loop >= 100
        assert by_loop <= 3, readers


async def test_the_receive_loop_reads_again_once_the_consumer_is_away() -> None:
    async with open_test_server(echo=False) as server, manager(server) as ws:
        with anyio.fail_after(WAIT):
            await server.broadcast("first")
            assert await ws.receive() == "first"  # a pull
            # The consumer now does something else for a while: the receive loop takes over,
            # so what arrives is read (and counted, and queued) without anyone asking.
            await anyio.sleep(PULL_GRACE * 4)
            for n in range(5):
                await server.broadcast(f"later{n}")
            await wait_until(lambda: ws.stats.messages_received == 6)
            assert ws._inbox.queued == 5
            assert [await ws.receive() for _ in range(5)] == [f"later{n}" for n in range(5)]


async def test_a_burst_larger_than_queue_size_reaches_a_waiting_consumer_whole() -> None:
    """overflow="block": the consumer that read the burst must not wait for room only it can
    make; the whole burst is queued and nothing is dropped."""
    async with (
        open_test_server(echo=False) as server,
        manager(server, queue_size=2, overflow="block") as ws,
    ):
        got: list[str] = []

        async def consume() -> None:
            async for message in ws:
                got.append(message)
                if len(got) == 20:
                    return

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.sleep(PULL_GRACE * 4)  # the consumer is waiting in a pull
                burst = b"".join(server_frame(f"b{n}") for n in range(20))
                assert await server.send_raw(burst) == 1  # one write: one socket read
        assert got == [f"b{n}" for n in range(20)]
        assert ws.stats.messages_dropped == 0


async def test_a_rotation_moves_a_waiting_consumer_to_the_new_connection_at_once() -> None:
    """The old connection never answers our close frame (close_timeout 2 s): a consumer that was
    reading it must not wait for that close to finish before it sees the new connection's
    messages."""
    async with open_test_server(echo=False) as server:
        ws = manager(server, close_timeout=2.0, ping_interval=None)
        got: list[int] = []

        async def consume() -> None:
            async for message in ws:
                got.append(int(message["seq"]))  # noqa: PERF401 - watched while it grows

        async with ws, anyio.create_task_group() as tg:
            tg.start_soon(consume)
            with anyio.fail_after(WAIT):
                await server.broadcast(json.dumps({"seq": 1}))
                await wait_until(lambda: got == [1])
                await anyio.sleep(PULL_GRACE * 4)  # the consumer now waits in a pull
                old = server.clients[0]
                server.silence_clients(old)  # it will not answer the close frame
                result: list[bool] = []

                async def rotate() -> None:
                    result.append(await ws.rotate())

                tg.start_soon(rotate)
                await server.wait_for_handshakes(2)
                started = anyio.current_time()
                await server.send(server.clients[1], json.dumps({"seq": 2}))
                await wait_until(lambda: got == [1, 2])
                assert anyio.current_time() - started < 1.0  # well within close_timeout
                await server.send(server.clients[1], json.dumps({"seq": 3}))
                await wait_until(lambda: got == [1, 2, 3])
            tg.cancel_scope.cancel()
        assert result in ([], [True])  # the old close may still be waiting when we cancel


async def test_keepalive_pongs_are_read_by_a_waiting_consumer() -> None:
    """The consumer holds the socket while it waits: the pongs to our pings come through its
    read, and the connection is not declared dead."""
    async with (
        open_test_server(echo=False) as server,
        manager(server, ping_interval=0.02, ping_timeout=0.5) as ws,
    ):
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:

                async def consume() -> None:
                    assert await ws.receive() == "done"

                tg.start_soon(consume)
                await anyio.sleep(0.3)  # ~15 pings while the consumer waits
                assert ws.stats.latency is not None
                assert ws.is_connected
                assert ws.stats.disconnects == 0
                await server.broadcast("done")


async def test_a_cancelled_pull_hands_the_socket_back_to_the_receive_loop() -> None:
    async with open_test_server(echo=False) as server, manager(server) as ws:
        with anyio.fail_after(WAIT):
            with anyio.move_on_after(0.05):
                await ws.receive()  # pulls, then is cancelled while waiting
            for n in range(3):
                await server.broadcast(f"m{n}")
            # Nobody waits now: the receive loop reads and queues them.
            await wait_until(lambda: ws._inbox.queued == 3)
            assert [await ws.receive() for _ in range(3)] == ["m0", "m1", "m2"]


def _binary_burst(count: int, size: int = 65_536) -> bytes:
    """``count`` unmasked binary frames of ``size`` bytes each (message n filled with byte n)."""
    header = bytes([0x82, 127]) + size.to_bytes(8, "big")
    return b"".join(header + bytes([n]) * size for n in range(count))


# After a read that filled the buffer, the consumer's next wait on the socket cannot be
# interrupted (WebSocketConnection.read_batch): these pin down that it still ends when it must.


async def _consume_after_a_burst(
    server: WebSocketTestServer, ws: ManagedWebSocket, tg: anyio.abc.TaskGroup
) -> list[bytes]:
    """Start a consumer in ``tg`` that collects every message; once it waits in a pull, send a
    512 KiB burst (full reads) and return its list when it has taken all 8 messages."""
    got: list[bytes] = []

    async def consume() -> None:
        async for message in ws:
            got.append(message)  # noqa: PERF401 - watched while it grows

    tg.start_soon(consume)
    await anyio.sleep(PULL_GRACE * 4)  # the consumer waits in a pull
    await server.send_raw(_binary_burst(8))
    await wait_until(lambda: len(got) == 8)
    return got


async def test_close_ends_a_consumer_waiting_right_after_a_burst() -> None:
    """The server never answers our close frame: close() takes close_timeout, then the socket
    goes, and the consumer's loop ends with every message of the burst taken."""
    async with open_test_server(echo=False) as server:
        ws = manager(server, close_timeout=0.3, ping_interval=None, decode=None)
        with anyio.fail_after(WAIT):
            async with ws, anyio.create_task_group() as tg:
                got = await _consume_after_a_burst(server, ws, tg)
                server.silence_clients()
                started = anyio.current_time()
                await ws.close()
                assert anyio.current_time() - started < 2.0
        assert [message[0] for message in got] == list(range(8))


async def test_a_rotation_moves_a_consumer_waiting_right_after_a_burst() -> None:
    """The old connection answers our close frame: that ends the consumer's read on it, and it
    goes on to the new connection's messages well within close_timeout."""
    async with open_test_server(echo=False) as server:
        ws = manager(server, close_timeout=2.0, ping_interval=None, decode=None)
        with anyio.fail_after(WAIT):
            async with ws, anyio.create_task_group() as tg:
                got = await _consume_after_a_burst(server, ws, tg)
                result: list[bool] = []

                async def rotate() -> None:
                    result.append(await ws.rotate())

                tg.start_soon(rotate)
                await server.wait_for_handshakes(2)
                started = anyio.current_time()
                await server.send(server.clients[1], b"new")
                await wait_until(lambda: got[-1:] == [b"new"])
                assert anyio.current_time() - started < 1.0
                await wait_until(lambda: result == [True])
                tg.cancel_scope.cancel()
        assert len(got) == 9


async def test_a_half_open_connection_right_after_a_burst_is_noticed_and_replaced() -> None:
    """The server goes silent (no pongs, no close) just after a burst, while the consumer waits
    in a read that cannot be interrupted: the receive loop's keepalive still declares the
    connection dead after ping_timeout, its socket goes, and the consumer goes on with the new
    connection."""
    async with open_test_server(echo=False) as server:
        ws = manager(server, ping_interval=0.05, ping_timeout=0.2, decode=None)
        with anyio.fail_after(WAIT):
            async with ws, anyio.create_task_group() as tg:
                got = await _consume_after_a_burst(server, ws, tg)
                server.silence_clients()
                await server.wait_for_handshakes(2)
                last = ws.last_disconnect
                assert last is not None
                assert last.reason is DisconnectReason.PING_TIMEOUT
                await ws.wait_connected()
                await server.send(server.clients[1], b"after")
                await wait_until(lambda: got[-1:] == [b"after"])
                tg.cancel_scope.cancel()
        assert len(got) == 9


@pytest.mark.parametrize("on_message", [None, print])
async def test_an_idle_connection_is_served_by_the_managers_own_task(
    anyio_backend_name: str, on_message: Any
) -> None:
    """Once open, the manager's task reads the socket and keeps the connection alive itself: an
    idle default connection costs one task. With on_message (user code in the receive loop),
    the loop has a task of its own."""
    async with open_test_server(echo=False) as server, anyio.create_task_group() as tg:
        before = library_tasks(anyio_backend_name)
        ws = manager(server, ping_interval=0.02, ping_timeout=0.5, on_message=on_message)
        with anyio.fail_after(WAIT):
            await tg.start(ws.run)
            await anyio.sleep(0.2)  # pings go out and come back meanwhile
            tasks = library_tasks(anyio_backend_name)
            assert len(tasks) - len(before) == (1 if on_message is None else 2), tasks
            assert ws.stats.latency is not None
            assert ws.stats.disconnects == 0
        tg.cancel_scope.cancel()
