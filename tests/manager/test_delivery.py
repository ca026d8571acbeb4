"""Delivery: what send() puts on the wire, what consumers get (decoding, batches), and the
overflow policies of a full queue (SPEC 2, 4 and 5).

Every test runs the real manager against the real testing server on both backends. Defect numbers
refer to replaced-system.md section 6.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from managed_websocket import (
    ManagedWebSocket,
    WebSocketClosedError,
    WebSocketQueueFullError,
    WebSocketTimeoutError,
)
from managed_websocket.testing import WebSocketTestServer, open_test_server

from ._harness import WAIT, Recorder, manager, wait_until

pytestmark = pytest.mark.anyio


async def take(ws: ManagedWebSocket, n: int) -> list[Any]:
    return [await ws.receive() for _ in range(n)]


async def broadcast(server: WebSocketTestServer, messages: list[str]) -> None:
    for message in messages:
        assert await server.broadcast(message) == 1


# -- send -----------------------------------------------------------------------------------


async def test_send_encodes_by_type() -> None:
    """D19: the old send(b"..") sent the text "b'..'"."""
    async with open_test_server() as server, manager(server) as ws:
        with anyio.fail_after(WAIT):
            await ws.send({"op": "sub", "args": [1, "x"]})
            await ws.send(["a", {"b": None}])
            await ws.send("plain text")
            await ws.send(b"\x00\x01bin")
            await ws.send(bytearray(b"ba"))
            await ws.send(memoryview(b"mv"))
            await server.wait_for_messages(6)
            # The echoes come back decoded by the default decoder.
            echoed = await take(ws, 6)
        assert server.clients[0].messages == [
            '{"op":"sub","args":[1,"x"]}',
            '["a",{"b":null}]',
            "plain text",
            b"\x00\x01bin",
            b"ba",
            b"mv",
        ]
        assert echoed == [
            {"op": "sub", "args": [1, "x"]},
            ["a", {"b": None}],
            "plain text",
            b"\x00\x01bin",
            b"ba",
            b"mv",
        ]
        with pytest.raises(TypeError, match="int"):
            await ws.send(42)
        assert ws.stats.messages_sent == 6


@pytest.mark.parametrize("when", ["close", "kill", "request_disconnect", "outage"])
async def test_send_when_not_connected_raises_closed(when: str) -> None:
    async with open_test_server() as server, manager(server, reconnect_delay=5.0) as ws:
        with anyio.fail_after(WAIT):
            if when == "outage":
                await server.drop_clients()
                await ws.wait_disconnected()
            else:
                await getattr(ws, when)()
        with pytest.raises(WebSocketClosedError):
            await ws.send({"lost": True})
        with pytest.raises(WebSocketClosedError):
            await ws.send(b"lost")
        assert server.clients[0].messages == []
        assert ws.stats.messages_sent == 0


# -- receive and decoding -------------------------------------------------------------------


async def test_receive_times_out_on_an_idle_connection() -> None:
    async with open_test_server() as server, manager(server) as ws:
        start = anyio.current_time()
        with anyio.fail_after(WAIT), pytest.raises(WebSocketTimeoutError) as info:
            await ws.receive(timeout=0.1)
        assert anyio.current_time() - start >= 0.1 - 0.005
        assert isinstance(info.value, TimeoutError)
        assert (info.value.operation, info.value.timeout) == ("receive", 0.1)
        assert ws.is_connected  # a timeout is not a disconnect
        with anyio.fail_after(WAIT):
            await server.broadcast("later")
            assert await ws.receive(timeout=1) == "later"


RAW = ['{"a": 1}', " [1, 2]", "42", "true", "null", "{broken", "plain"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, [{"a": 1}, [1, 2], "42", "true", "null", "{broken", "plain", b"\x00{}"]),
        ({"decode": None}, [*RAW, b"\x00{}"]),
    ],
    ids=["default", "raw"],
)
async def test_decoding(options: dict[str, Any], expected: list[Any]) -> None:
    async with open_test_server() as server, manager(server, **options) as ws:
        with anyio.fail_after(WAIT):
            await broadcast(server, RAW)
            await server.broadcast(b"\x00{}")
            assert await take(ws, 8) == expected
        assert ws.stats.callback_errors == 0


async def test_a_decoder_that_raises_delivers_that_message_raw(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def decode(message: str | bytes) -> Any:
        if message == "bad":
            raise ValueError("cannot decode")
        return ("decoded", message)

    async with open_test_server() as server, manager(server, decode=decode) as ws:
        with anyio.fail_after(WAIT):
            await broadcast(server, ["one", "bad", "two"])
            assert await take(ws, 3) == [("decoded", "one"), "bad", ("decoded", "two")]
            await broadcast(server, ["three"])
            assert await ws.receive() == ("decoded", "three")
        assert ws.stats.callback_errors == 1
        assert ws.is_connected
        assert any("decode raised" in r.getMessage() for r in caplog.records)


async def test_batches_yield_lists() -> None:
    arrived = Recorder()
    messages = [f"m{i}" for i in range(50)]
    async with open_test_server() as server, manager(server, on_message=arrived) as ws:
        batches: list[Any] = []
        with anyio.fail_after(WAIT):
            await broadcast(server, messages)
            await arrived.wait(50)
            async for batch in ws.batches():
                batches.append(batch)
                if sum(map(len, batches)) == 50:
                    break
            await broadcast(server, ["last"])
            assert await ws.batches().__anext__() == ["last"]
        # One list per socket read (how many reads is up to the kernel), in order, none empty.
        assert all(type(batch) is list and batch for batch in batches)
        assert [message for batch in batches for message in batch] == messages


async def test_on_message_that_raises_is_counted_and_the_message_still_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """B9: the old manager treated a raising on_message as a protocol error: reconnect, and the
    message was lost."""
    seen: list[Any] = []

    def on_message(message: Any) -> None:
        seen.append(message)
        if message == "boom":
            raise RuntimeError("handler bug")

    async with open_test_server() as server, manager(server, on_message=on_message) as ws:
        with anyio.fail_after(WAIT):
            await broadcast(server, ["before", "boom", "after"])
            assert await take(ws, 3) == ["before", "boom", "after"]
        assert seen == ["before", "boom", "after"]
        assert ws.stats.callback_errors == 1
        assert ws.is_connected
        assert ws.stats.disconnects == 0
        assert len(server.clients) == 1
        assert any(
            "on_message callback raised" in r.getMessage() and r.exc_info for r in caplog.records
        )


# -- overflow ---------------------------------------------------------------------------------


async def fill_while_nobody_reads(
    server: WebSocketTestServer, arrived: Recorder, messages: list[str]
) -> None:
    """Send ``messages`` and wait until the manager has handled all of them (queued or dropped)."""
    before = len(arrived)
    await broadcast(server, messages)
    await arrived.wait(before + len(messages))
    await anyio.sleep(0.02)  # let the receive loop finish the last batch


@pytest.mark.parametrize(
    ("overflow", "first", "later"),
    [
        ("drop_newest", [f"m{i}" for i in range(5)], ["n0", "n1"]),
        ("drop_oldest", [f"m{i}" for i in range(15, 20)], ["n0", "n1"]),
    ],
)
async def test_drop_policies(overflow: str, first: list[str], later: list[str]) -> None:
    """B13: the old queue silently dropped the newest message, with no counter and no choice."""
    arrived = Recorder()
    async with (
        open_test_server() as server,
        manager(server, queue_size=5, overflow=overflow, on_message=arrived) as ws,
    ):
        with anyio.fail_after(WAIT):
            await fill_while_nobody_reads(server, arrived, [f"m{i}" for i in range(20)])
            assert await take(ws, 5) == first
            await broadcast(server, later)
            assert await take(ws, 2) == later
            with pytest.raises(WebSocketTimeoutError):
                await ws.receive(timeout=0.05)
        sent, received = 22, 7
        assert ws.stats.messages_dropped == sent - received == 15
        assert ws.stats.messages_received == sent  # counted on arrival, dropped or not
        assert ws.is_connected


async def test_error_policy_raises_once_at_the_gap_and_iteration_continues() -> None:
    arrived = Recorder()
    async with (
        open_test_server() as server,
        manager(server, queue_size=5, overflow="error", on_message=arrived) as ws,
    ):
        messages = ws.stream()
        with anyio.fail_after(WAIT):
            await fill_while_nobody_reads(server, arrived, [f"m{i}" for i in range(20)])
            assert [await anext(messages) for _ in range(5)] == [f"m{i}" for i in range(5)]
            with pytest.raises(WebSocketQueueFullError) as info:
                await anext(messages)
            # One error for the whole gap, however many socket reads the burst took.
            assert (info.value.queue_size, info.value.dropped_count) == (5, 15)
            # The consumer carries on after the gap, with the same iterator or a new one.
            await broadcast(server, ["n0", "n1", "n2"])
            assert await anext(messages) == "n0"
            async for message in ws:
                assert message == "n1"
                break
            assert await ws.receive() == "n2"
            with pytest.raises(WebSocketTimeoutError):
                await ws.receive(timeout=0.05)
        assert ws.stats.messages_dropped == 15
        assert ws.is_connected


async def test_block_policy_loses_nothing_and_a_slow_consumer_is_no_ping_timeout() -> None:
    """D14/B13: a slow consumer must not lose messages or cause a false keepalive timeout."""
    arrived = Recorder()
    async with (
        open_test_server() as server,
        manager(
            server,
            queue_size=5,
            overflow="block",
            ping_interval=0.2,
            ping_timeout=0.2,
            on_message=arrived,
        ) as ws,
    ):
        messages = [f"m{i}" for i in range(200)]
        got: list[Any] = []
        with anyio.fail_after(WAIT):
            await broadcast(server, messages)
            await anyio.sleep(1.5)  # the consumer pauses: seven keepalive periods
            assert ws._inbox.blocked  # the receive loop is holding messages, waiting for space
            assert ws.is_connected
            async for message in ws:
                got.append(message)
                if len(got) == 200:
                    break
            await anyio.sleep(0.3)  # keepalive resumes once the queue has room
        assert got == messages
        assert ws.stats.disconnects == 0
        assert ws.stats.messages_dropped == 0
        assert ws.is_connected
        assert len(server.clients) == 1
        assert server.clients[0].pings_received >= 1
        assert ws.latency is not None


async def test_drop_alerts_are_throttled_and_aggregated() -> None:
    """B13: the old manager called on_alert once per dropped message."""
    arrived = Recorder()
    alerts = Recorder()
    async with (
        open_test_server() as server,
        manager(
            server,
            queue_size=5,
            overflow="drop_newest",
            on_message=arrived,
            on_alert=alerts,
            disconnect_alert_interval=0.4,
        ) as ws,
    ):
        with anyio.fail_after(WAIT):
            await fill_while_nobody_reads(server, arrived, [f"m{i}" for i in range(5)])
            assert len(alerts) == 0
            start = anyio.current_time()
            await fill_while_nobody_reads(server, arrived, ["x0"])  # the first drop: alert now
            assert len(alerts) == 1
            await fill_while_nobody_reads(server, arrived, [f"y{i}" for i in range(10)])
            assert len(alerts) == 1  # within the interval: counted, not alerted
            # The ten held back are reported when the interval ends, with no further drop.
            await wait_until(lambda: len(alerts) == 2)
            assert anyio.current_time() - start >= 0.4 - 0.01
            await fill_while_nobody_reads(server, arrived, ["z0"])  # held again, then flushed
            await wait_until(lambda: len(alerts) == 3)
        (channel, message, context), (_, _, context2), (_, _, context3) = alerts.args
        assert channel == "queue_overflow"
        assert "dropped 1 messages" in message
        assert context == {"queue_size": 5, "dropped": 1, "overflow": "drop_newest"}
        assert context2["dropped"] == 10
        assert context3["dropped"] == 1
        assert ws.stats.messages_dropped == 12
        assert ws.stats.callback_errors == 0


async def test_on_alert_that_raises_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    arrived = Recorder()

    def on_alert(*args: Any) -> None:
        raise RuntimeError("alert handler bug")

    async with (
        open_test_server() as server,
        manager(
            server, queue_size=2, overflow="drop_newest", on_message=arrived, on_alert=on_alert
        ) as ws,
    ):
        with anyio.fail_after(WAIT):
            await fill_while_nobody_reads(server, arrived, ["a", "b", "c"])
            assert await take(ws, 2) == ["a", "b"]
            await broadcast(server, ["d"])
            assert await ws.receive() == "d"
        assert ws.stats.callback_errors == 1
        assert ws.stats.messages_dropped == 1
        assert ws.is_connected
        assert any("on_alert callback raised" in r.getMessage() for r in caplog.records)


async def test_queue_size_zero_is_unbounded() -> None:
    arrived = Recorder()
    async with (
        open_test_server() as server,
        manager(server, queue_size=0, overflow="error", on_message=arrived) as ws,
    ):
        messages = [f"m{i}" for i in range(300)]
        with anyio.fail_after(WAIT):
            await fill_while_nobody_reads(server, arrived, messages)
            assert await take(ws, 300) == messages
        assert ws.stats.messages_dropped == 0


@pytest.fixture(autouse=True)
def _capture_library_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="managed_websocket")
