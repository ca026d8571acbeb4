"""Make-before-break rotation against the real testing server, on both backends.

A :class:`Feed` task broadcasts ``{"seq": n}`` to every open connection about every millisecond;
a :class:`Consumer` task records every seq the manager hands over. Because the test server
broadcasts in the same order on every connection, the consumer's record shows exactly what a
rotation lost or repeated. Every wait is bounded by ``anyio.fail_after``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from managed_websocket import (
    DisconnectReason,
    LifecycleEvent,
    ManagedWebSocket,
    RotationCompleted,
    RotationFailed,
    RotationStarted,
)
from managed_websocket.testing import ClientRecord, WebSocketTestServer, open_test_server

from ._harness import EPS, Feed, manager, wait_until

pytestmark = pytest.mark.anyio

#: Upper bound for a whole test's waiting (the machine is shared: generous).
LONG = 30.0
#: Slack for upper bounds on durations measured on a busy machine.
SLACK = 0.3


def seq_key(message: Any) -> int:
    return int(message["seq"])


class Consumer:
    """Records every seq the manager delivers, in delivery order."""

    def __init__(self, ws: ManagedWebSocket, delay: float = 0.0) -> None:
        self.ws = ws
        self.delay = delay  # per message: a slow consumer
        self.seqs: list[int] = []

    async def run(self) -> None:
        if self.delay:
            async for message in self.ws:
                self.seqs.append(seq_key(message))
                await anyio.sleep(self.delay)
        else:
            async for batch in self.ws.batches():
                self.seqs.extend(seq_key(m) for m in batch)

    async def wait_for(self, seq: int) -> None:
        await wait_until(lambda: bool(self.seqs) and max(self.seqs) >= seq)

    async def wait_for_more(self, count: int = 5) -> None:
        """Wait until ``count`` more messages arrived (the feed is flowing to us)."""
        target = len(self.seqs) + count
        await wait_until(lambda: len(self.seqs) >= target)


class EventLog:
    """Collects ``ws.events()`` in a task."""

    def __init__(self, ws: ManagedWebSocket) -> None:
        self.listener = ws.events(buffer=0)
        self.events: list[LifecycleEvent] = []

    async def run(self) -> None:
        async for event in self.listener:
            self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    async def settled(self) -> None:
        """Wait until this log has taken every event published so far: nothing buffered, and
        its task back waiting for the next one (an event handed straight to the waiting task
        is in neither place until that task runs). It once counted 99 of 100 RotationCompleted
        by reading too early, twice: the first fix only looked at the buffer."""

        def idle() -> bool:
            stats = self.listener._receive.statistics()
            return stats.current_buffer_used == 0 and stats.tasks_waiting_receive == 1

        await wait_until(idle)


@asynccontextmanager
async def feeding(
    server: WebSocketTestServer,
    ws: ManagedWebSocket,
    *,
    interval: float = 0.001,
    delay: float = 0.0,
) -> AsyncIterator[tuple[Feed, Consumer, EventLog]]:
    """Run the manager, a feed, a consumer and an event log; stop them all at the end."""
    feed, consumer, log = Feed(server, interval), Consumer(ws, delay), EventLog(ws)
    async with ws, anyio.create_task_group() as tg:
        tg.start_soon(log.run)
        tg.start_soon(consumer.run)
        tg.start_soon(feed.run)
        with anyio.fail_after(LONG):
            await consumer.wait_for(0)
        yield feed, consumer, log
        tg.cancel_scope.cancel()


def assert_exactly_once(seqs: list[int], first: int, last: int) -> None:
    """Every seq from ``first`` to ``last`` delivered once, in order."""
    missing = sorted(set(range(first, last + 1)) - set(seqs))
    duplicates = len(seqs) - len(set(seqs))
    assert (missing, duplicates) == ([], 0)
    assert seqs == list(range(first, last + 1))


async def stop_and_drain(feed: Feed, consumer: Consumer) -> int:
    last = await feed.stop()
    await consumer.wait_for(last)
    return last


# -- 100 rotations under load ---------------------------------------------------------------------


@pytest.mark.parametrize("interval", [0.001, 0.0], ids=["1ms", "flat-out"])
async def test_hundred_rotations_under_load_lose_and_repeat_nothing_with_a_dedup_key(
    anyio_backend: str, interval: float
) -> None:
    """``flat-out``: the feed only yields between broadcasts, so messages arrive on both
    connections while the new one completes its handshake and while the switch runs."""
    async with (
        open_test_server(echo=False) as server,
        feeding(
            server, manager(server, dedup_key=seq_key, sequence_of=seq_key), interval=interval
        ) as (feed, consumer, log),
    ):
        ws = consumer.ws
        with anyio.fail_after(LONG):
            start = anyio.current_time()
            results = [await ws.rotate() for _ in range(100)]
            duration = anyio.current_time() - start
            last = await stop_and_drain(feed, consumer)
            await log.settled()
        assert results == [True] * 100
        assert_exactly_once(consumer.seqs, consumer.seqs[0], last)
        stats = ws.stats
        assert (stats.rotations, stats.rotations_failed, stats.connects) == (100, 0, 101)
        assert stats.disconnects == 0  # the manager never went down
        assert stats.gaps_detected == 0
        # Every switch needs the new connection's first message, which the old one delivered too.
        assert stats.overlap_messages >= 100
        assert stats.duplicates_dropped > 0
        completed = log.of(RotationCompleted)
        assert len(completed) == 100
        assert sum(e.overlap_messages for e in completed) == stats.overlap_messages
        # The events count what each switch dropped from its staged messages; the filter may go
        # on for the new connection's first messages after it, which only the stats count.
        assert 0 < sum(e.duplicates_dropped for e in completed) <= stats.duplicates_dropped
        # Every old connection was closed by us with 1000; only the newest one is left.
        assert len(server.clients) == 101
        await wait_until(lambda: len(server.live_clients) == 1)
        assert server.live_clients == [server.clients[-1]]
        assert all(
            (c.ended_by, c.close_code) == ("client_close", 1000) for c in server.clients[:-1]
        )
        # Each rotation is a covered outage record without a missing range.
        assert len(ws.outages) == 100
        assert all(o.covered and o.first_missing is None for o in ws.outages)
        print(
            f"\n[{anyio_backend}, feed every {interval * 1000:g} ms] 100 rotations with dedup_key: "
            f"{duration:.3f} s, "
            f"{len(consumer.seqs)} messages, overlap {stats.overlap_messages}, "
            f"duplicates dropped {stats.duplicates_dropped}"
        )


async def test_hundred_rotations_without_a_key_report_the_overlap_and_lose_nothing(
    anyio_backend: str,
) -> None:
    """Without dedup_key the switch happens at the new connection's first message: what it
    staged is delivered as is, so each rotation may repeat what the old connection delivered
    meanwhile (reported as overlap_messages; nothing is dropped). With a consumer that keeps up,
    nothing is lost."""
    async with (
        open_test_server(echo=False) as server,
        feeding(server, manager(server)) as (feed, consumer, log),
    ):
        ws = consumer.ws
        with anyio.fail_after(LONG):
            start = anyio.current_time()
            results = [await ws.rotate() for _ in range(100)]
            duration = anyio.current_time() - start
            last = await stop_and_drain(feed, consumer)
            await log.settled()
        assert results == [True] * 100
        seqs = consumer.seqs
        first = seqs[0]
        assert sorted(set(seqs)) == list(range(first, last + 1))  # no gaps
        duplicates = len(seqs) - len(set(seqs))
        stats = ws.stats
        assert stats.rotations == 100
        assert stats.overlap_messages >= 100  # at least the first message of each
        assert stats.duplicates_dropped == 0  # nothing is filtered without a key
        assert duplicates <= stats.overlap_messages
        # A duplicate can only come from a switch: the stream goes back at most once per rotation.
        backsteps = sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
        assert backsteps <= 100
        assert [e.duplicates_dropped for e in log.of(RotationCompleted)] == [0] * 100
        print(
            f"\n[{anyio_backend}] 100 rotations without a key: {duration:.3f} s, "
            f"{len(seqs)} messages, overlap {stats.overlap_messages}, "
            f"duplicates delivered {duplicates}"
        )


async def test_a_slow_consumer_loses_nothing_across_rotations_with_a_dedup_key() -> None:
    """Regression: with a bounded queue and a consumer slower than the feed, the old connection
    lags behind what it has received; switching at the new connection's first message threw away
    the messages the old one had not delivered yet (gaps of 1-3 seqs in most rotations). The
    switch now waits until the old connection has delivered something the new one staged."""
    async with (
        open_test_server(echo=False) as server,
        feeding(
            server,
            manager(server, dedup_key=seq_key, queue_size=4),
            interval=0.0005,
            delay=0.001,
        ) as (feed, consumer, _),
    ):
        ws = consumer.ws
        with anyio.fail_after(LONG):
            results = [await ws.rotate() for _ in range(20)]
            last = await stop_and_drain(feed, consumer)
        assert results == [True] * 20
        assert_exactly_once(consumer.seqs, consumer.seqs[0], last)
        assert ws.stats.messages_dropped == 0


async def test_what_the_old_connection_delivers_during_the_new_handshake_is_not_repeated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: the server sends on a new connection as soon as it has accepted it, but the
    old connection only started recording keys once the client had finished its handshake, so
    a message it delivered in between was delivered again at the switch. Here the handshake
    is held (after the server accepted) until the old connection delivered seq 1."""
    async with open_test_server(echo=False) as server:
        ws = manager(server, dedup_key=seq_key)
        consumer = Consumer(ws)
        async with ws, anyio.create_task_group() as tg:
            tg.start_soon(consumer.run)
            with anyio.fail_after(LONG):
                await server.broadcast(json.dumps({"seq": 0}))
                await consumer.wait_for(0)
                real_open = ws._open

                async def open_slowly() -> Any:
                    conn = await real_open()
                    await server.wait_for_handshakes(2)
                    await server.broadcast(json.dumps({"seq": 1}))  # on both connections
                    await consumer.wait_for(1)  # delivered by the old one
                    return conn

                monkeypatch.setattr(ws, "_open", open_slowly)
                assert await ws.rotate()
                await server.broadcast(json.dumps({"seq": 2}))
                await consumer.wait_for(2)
            tg.cancel_scope.cancel()
        assert consumer.seqs == [0, 1, 2]
        assert (ws.stats.overlap_messages, ws.stats.duplicates_dropped) == (1, 1)


# -- failed rotations -----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["refused", "stalled"])
async def test_a_rotation_whose_new_connection_cannot_open_keeps_the_old_one(fault: str) -> None:
    async with open_test_server(echo=False) as server:
        ws = manager(server, dedup_key=seq_key, connection_timeout=0.3)
        async with feeding(server, ws) as (feed, consumer, log):
            with anyio.fail_after(LONG):
                if fault == "refused":
                    server.refuse_handshakes(503, count=1)
                else:
                    server.stall_handshakes(count=1)
                start = anyio.current_time()
                assert await ws.rotate() is False
                elapsed = anyio.current_time() - start
                # The old connection keeps delivering.
                await consumer.wait_for_more()
                assert ws.is_connected
                assert not server.clients[0].closed
                assert server.clients[1].ended_by == fault
                stats = ws.stats
                assert (stats.rotations, stats.rotations_failed) == (0, 1)
                assert stats.disconnects == 0
                (failed,) = log.of(RotationFailed)
                assert failed.error.startswith("dial failed")
                if fault == "refused":
                    assert "503" in failed.error
                else:
                    assert elapsed >= 0.3 - EPS  # the dial timed out
                (started,) = log.of(RotationStarted)
                assert started.reason is DisconnectReason.USER_REQUESTED  # rotate(), not the timer
                # The fault was for one connection only: the next rotation works.
                assert await ws.rotate() is True
                last = await stop_and_drain(feed, consumer)
        assert_exactly_once(consumer.seqs, consumer.seqs[0], last)
        assert (ws.stats.rotations, ws.stats.rotations_failed) == (1, 1)
        assert [type(e) for e in log.events if "Rotation" in type(e).__name__] == [
            RotationStarted,
            RotationFailed,
            RotationStarted,
            RotationCompleted,
        ]


async def test_a_new_connection_that_never_warms_up_is_closed_after_rotation_timeout() -> None:
    async with open_test_server(echo=False) as server:
        ws = manager(server, is_warm=lambda message: False, rotation_timeout=0.3)
        async with feeding(server, ws) as (feed, consumer, log):
            with anyio.fail_after(LONG):
                start = anyio.current_time()
                assert await ws.rotate() is False
                elapsed = anyio.current_time() - start
                candidate = server.clients[1]
                await candidate.wait_closed()  # the candidate's socket is gone on the server side
                assert candidate.handshake_completed
                assert candidate.ended_by == "client_eof"  # aborted: no close frame
                assert not server.clients[0].closed
                await consumer.wait_for_more()  # the old one still delivers
                last = await stop_and_drain(feed, consumer)
        assert 0.3 - EPS <= elapsed <= 0.3 + SLACK
        # Nothing the candidate staged was delivered: no duplicate, no gap.
        assert_exactly_once(consumer.seqs, consumer.seqs[0], last)
        (failed,) = log.of(RotationFailed)
        assert "not warm" in failed.error
        assert (ws.stats.rotations, ws.stats.rotations_failed, ws.stats.overlap_messages) == (
            0,
            1,
            0,
        )


async def test_is_warm_decides_when_the_switch_happens() -> None:
    async with open_test_server(echo=False) as server:
        ws = manager(server, is_warm=lambda message: message.get("warm") is True)
        consumer = Consumer(ws)
        async with ws, anyio.create_task_group() as tg:
            tg.start_soon(consumer.run)
            with anyio.fail_after(LONG):
                result: list[bool] = []

                async def rotate() -> None:
                    result.append(await ws.rotate())

                tg.start_soon(rotate)
                await server.wait_for_handshakes(2)
                new = server.clients[1]
                await server.send(new, json.dumps({"seq": 100}))  # staged, not warm yet
                await anyio.sleep(0.1)
                assert not result
                assert not server.clients[0].closed
                await server.send(new, json.dumps({"seq": 101, "warm": True}))
                await wait_until(lambda: bool(result))
                await consumer.wait_for(101)
            tg.cancel_scope.cancel()
        assert result == [True]
        assert consumer.seqs == [100, 101]  # the staged messages, in order, once
        assert ws.stats.overlap_messages == 2


async def test_rotate_is_refused_while_another_rotation_runs_or_when_not_connected() -> None:
    async with open_test_server(echo=False) as server:
        ws = manager(server, is_warm=lambda message: False, rotation_timeout=0.3)
        assert await ws.rotate() is False  # not started
        async with ws, anyio.create_task_group() as tg:
            with anyio.fail_after(LONG):
                result: list[bool] = []

                async def rotate() -> None:
                    result.append(await ws.rotate())

                tg.start_soon(rotate)
                await server.wait_for_handshakes(2)
                assert await ws.rotate() is False  # one at a time; it does not count as failed
                assert ws.stats.rotations_failed == 0
                await wait_until(lambda: bool(result))
        assert result == [False]
        assert ws.stats.rotations_failed == 1
        assert await ws.rotate() is False  # shut down


# -- faulty user callbacks ------------------------------------------------------------------------


async def test_a_dedup_key_that_raises_does_not_bring_the_manager_down() -> None:
    """Regression: dedup_key ran unguarded in the receive loop, so a message without the key
    (an ack, a heartbeat) crashed the whole manager. Now such a message has no key: it is
    delivered, it does not stop the filtering, and the error is counted like any other
    callback error."""
    async with open_test_server(echo=False) as server:
        ws = manager(server, dedup_key=seq_key)
        received: list[Any] = []

        async def consume() -> None:
            async for message in ws:
                received.append(message)  # noqa: PERF401 - read while it runs

        async with ws, anyio.create_task_group() as tg:
            tg.start_soon(consume)
            with anyio.fail_after(LONG):
                rotation: list[bool] = []

                async def rotate() -> None:
                    rotation.append(await ws.rotate())

                tg.start_soon(rotate)
                await server.wait_for_handshakes(2)
                await server.broadcast(json.dumps({"type": "heartbeat"}))  # no "seq"
                await server.broadcast(json.dumps({"seq": 1}))
                await wait_until(lambda: bool(rotation))
                await server.broadcast(json.dumps({"seq": 2}))
                await wait_until(lambda: {"seq": 2} in received)
                assert ws.is_connected
            tg.cancel_scope.cancel()
        assert rotation == [True]
        assert ws.stats.callback_errors > 0
        # Each connection's heartbeat is delivered; seq 1, which both got, only once.
        assert received == [{"type": "heartbeat"}, {"seq": 1}, {"type": "heartbeat"}, {"seq": 2}]


async def test_an_is_warm_that_raises_does_not_bring_the_manager_down() -> None:
    async with open_test_server(echo=False) as server:
        ws = manager(server, is_warm=lambda message: message["ready"])
        async with ws:
            with anyio.fail_after(LONG):
                async with anyio.create_task_group() as tg:
                    rotation: list[bool] = []

                    async def rotate() -> None:
                        rotation.append(await ws.rotate())

                    tg.start_soon(rotate)
                    await server.wait_for_handshakes(2)
                    await server.send(server.clients[1], json.dumps({"seq": 1}))  # raises
                    await wait_until(lambda: ws.stats.callback_errors > 0)
                    assert not rotation
                    await server.send(server.clients[1], json.dumps({"ready": True}))
                await ws.receive(timeout=LONG)
                assert await ws.receive(timeout=LONG) == {"ready": True}
        assert rotation == [True]


# -- max_connection_age ---------------------------------------------------------------------------


async def test_max_connection_age_rotates_by_itself() -> None:
    async with open_test_server(echo=False) as server:
        ws = manager(server, max_connection_age=0.3, dedup_key=seq_key)
        async with feeding(server, ws) as (feed, consumer, log):
            with anyio.fail_after(LONG):
                await wait_until(lambda: ws.stats.rotations >= 3)
                last = await stop_and_drain(feed, consumer)
            disconnects = ws.stats.disconnects
        started = log.of(RotationStarted)
        assert all(e.reason is DisconnectReason.SCHEDULED for e in started)
        # Each rotation comes once the connection is max_connection_age old (it opened during
        # the previous rotation, so the interval between starts is at least that long).
        intervals = [b.at - a.at for a, b in itertools.pairwise(started)]
        assert all(0.3 - EPS <= i <= 0.3 + SLACK for i in intervals), intervals
        assert ws.stats.rotations_failed == 0
        assert disconnects == 0
        assert_exactly_once(consumer.seqs, consumer.seqs[0], last)


async def test_failed_scheduled_rotations_retry_per_the_backoff_policy_on_the_old_connection() -> (
    None
):
    async with open_test_server(echo=False) as server:
        ws = manager(
            server,
            max_connection_age=0.3,
            dedup_key=seq_key,
            reconnect_delay=0.1,
            max_reconnect_delay=1.0,
            reconnect_jitter=0.0,
            reconnect_strategy="exponential_backoff",
        )
        async with feeding(server, ws) as (feed, consumer, log):
            server.refuse_handshakes(503, count=3)  # the next three dials (the first one is done)
            with anyio.fail_after(LONG):
                await wait_until(lambda: ws.stats.rotations >= 1)
                last = await stop_and_drain(feed, consumer)
            disconnects = ws.stats.disconnects
        rotation_events = [e for e in log.events if "Rotation" in type(e).__name__]
        kinds = [type(e) for e in rotation_events]
        assert kinds[:8] == [RotationStarted, RotationFailed] * 3 + [
            RotationStarted,
            RotationCompleted,
        ]
        starts = [e.at for e in rotation_events[:8] if isinstance(e, RotationStarted)]
        intervals = [b - a for a, b in itertools.pairwise(starts)]
        # reconnect_delay * 2 ** (failures - 1): 0.1, 0.2, 0.4 after the 1st, 2nd, 3rd failure.
        for interval, expected in zip(intervals, [0.1, 0.2, 0.4], strict=True):
            assert expected - EPS <= interval <= expected + SLACK, intervals
        assert ws.stats.rotations_failed == 3
        assert disconnects == 0  # the old connection stayed up throughout
        assert [c.ended_by for c in server.clients[1:4]] == ["refused"] * 3
        assert_exactly_once(consumer.seqs, consumer.seqs[0], last)


async def test_scheduled_rotation_without_a_feed_waits_for_the_first_message_then_gives_up() -> (
    None
):
    """With no data on the new connection it never warms up (default: its first data message):
    a scheduled rotation fails after rotation_timeout, and the old connection stays."""
    async with open_test_server(echo=False) as server:
        ws = manager(server, max_connection_age=0.1, rotation_timeout=0.2, reconnect_delay=5.0)
        log = EventLog(ws)
        async with ws, anyio.create_task_group() as tg:
            tg.start_soon(log.run)
            with anyio.fail_after(LONG):
                await wait_until(lambda: ws.stats.rotations_failed >= 1)
            assert ws.is_connected
            assert not server.clients[0].closed
            tg.cancel_scope.cancel()
        (failed,) = log.of(RotationFailed)
        assert "not warm" in failed.error


async def test_a_rotation_behind_a_full_queue_nobody_reads_gives_up_and_loses_nothing() -> None:
    """overflow="block": the current connection's delivery waits for consumers, holding the
    switch. A rotation must give up after rotation_timeout, not wait forever (it once did)."""
    async with open_test_server(echo=False) as server:

        async def greet(client: ClientRecord) -> None:
            await server.send(client, json.dumps({"seq": -1}))  # warms a new connection up

        ws = manager(server, queue_size=2, rotation_timeout=0.3)
        log = EventLog(ws)
        async with ws, anyio.create_task_group() as tg:
            tg.start_soon(log.run)
            with anyio.fail_after(LONG):
                for n in range(10):  # nobody reads: the receive loop waits for room
                    await server.broadcast(json.dumps({"seq": n}))
                await wait_until(lambda: ws._inbox.blocked)
                server.on_handshake(greet)
                started = anyio.current_time()
                assert await ws.rotate() is False
                took = anyio.current_time() - started
                assert [seq_key(await ws.receive()) for _ in range(10)] == list(range(10))
                await log.settled()
            tg.cancel_scope.cancel()
    assert took <= 2 * 0.3 + SLACK  # the warm-up wait, then the switch's
    (failed,) = log.of(RotationFailed)
    assert "the queue is full and nobody reads" in failed.error
    assert ws.stats.rotations_failed == 1
