"""Lifecycle events (``ws.events()``) and the outage ledger (``ws.outages``, GapDetected) against
the real testing server, on both backends. Every wait is bounded by ``anyio.fail_after``.

A broadcast feed of ``{"seq": n}`` runs while the server drops the client: what the consumer
never received is exactly what the ledger and the GapDetected events must name.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

from managed_websocket import (
    Connected,
    Connecting,
    Disconnected,
    DisconnectReason,
    EventListener,
    GapDetected,
    LifecycleEvent,
    ManagedWebSocket,
    ReconnectScheduled,
)
from managed_websocket.testing import WebSocketTestServer, open_test_server

from ._harness import EPS, Feed, manager, wait_until

pytestmark = pytest.mark.anyio

R = DisconnectReason
LONG = 30.0
SLACK = 0.3


def seq_of(message: Any) -> int:
    return int(message["seq"])


class Consumer:
    def __init__(self, ws: ManagedWebSocket) -> None:
        self.ws = ws
        self.seqs: list[int] = []

    async def run(self) -> None:
        async for batch in self.ws.batches():
            self.seqs.extend(seq_of(m) for m in batch)

    async def wait_for(self, seq: int) -> None:
        await wait_until(lambda: bool(self.seqs) and self.seqs[-1] >= seq)

    async def wait_for_more(self, count: int = 5) -> None:
        target = len(self.seqs) + count
        await wait_until(lambda: len(self.seqs) >= target)


async def collect(listener: EventListener, into: list[LifecycleEvent]) -> None:
    async for event in listener:
        into.append(event)  # noqa: PERF401 - read while it runs


def missing_ranges(seqs: list[int], last: int) -> list[tuple[int, int]]:
    """The runs of numbers between the first seq and ``last`` that never arrived."""
    missing = sorted(set(range(seqs[0], last + 1)) - set(seqs))
    ranges: list[tuple[int, int]] = []
    for number in missing:
        if ranges and ranges[-1][1] == number - 1:
            ranges[-1] = (ranges[-1][0], number)
        else:
            ranges.append((number, number))
    return ranges


@asynccontextmanager
async def feeding(
    server: WebSocketTestServer, ws: ManagedWebSocket
) -> AsyncIterator[tuple[anyio.abc.TaskGroup, Feed, Consumer]]:
    feed, consumer = Feed(server), Consumer(ws)
    async with ws, anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        tg.start_soon(feed.run)
        with anyio.fail_after(LONG):
            await consumer.wait_for(0)
            yield tg, feed, consumer
        tg.cancel_scope.cancel()


async def drop_and_wait_for_reconnect(server: WebSocketTestServer, ws: ManagedWebSocket) -> None:
    connects = ws.stats.connects
    await server.drop_clients()
    await wait_until(lambda: ws.stats.connects > connects and ws.is_connected)


# -- lifecycle events -----------------------------------------------------------------------------


async def test_connect_drop_reconnect_publishes_typed_events_in_order() -> None:
    events: list[LifecycleEvent] = []
    async with open_test_server(echo=False) as server:
        ws = manager(server)  # exponential from 0.01 s, no jitter
        listener = ws.events()  # before the start: it sees the first connection too
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, listener, events)
            with anyio.fail_after(LONG):
                async with ws:
                    await drop_and_wait_for_reconnect(server, ws)
                # The manager is shut down: the listener's iteration ends by itself.
    kinds = [type(e) for e in events]
    assert kinds == [
        Connecting,
        Connected,
        Disconnected,
        ReconnectScheduled,
        Connecting,
        Connected,
        Disconnected,  # the shutdown
    ]
    first, _, disconnected, scheduled, second, _, shutdown = events
    assert (first.attempt, first.delay) == (0, 0.0)  # type: ignore[attr-defined]
    assert disconnected == Disconnected(
        reason=R.NETWORK_ERROR,
        code=1006,
        close_reason="",
        in_critical_section=False,
        at=disconnected.at,
    )
    assert scheduled == ReconnectScheduled(delay=0.01, attempt=1, at=scheduled.at)
    assert (second.attempt, second.delay) == (1, 0.01)  # type: ignore[attr-defined]
    assert (shutdown.reason, shutdown.code) == (R.USER_REQUESTED, 1000)  # type: ignore[attr-defined]
    assert all(e.subprotocol is None for e in events if isinstance(e, Connected))
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert listener.dropped == 0


@pytest.mark.parametrize("plan", ["reconnect_after", "schedule_reconnect", "should_reconnect"])
async def test_a_planned_pause_before_a_dial_is_announced(plan: str) -> None:
    """Every wait before a dial publishes ReconnectScheduled, so a listener can tell a planned
    pause from an immediate redial (it once went Disconnected, then Connecting 0.3 s later)."""
    events: list[tuple[float, LifecycleEvent]] = []
    options: dict[str, Any] = {}
    if plan == "should_reconnect":
        options = {"should_reconnect": lambda: 0.3, "reconnect_check_interval": 0.05}
    async with open_test_server(echo=False) as server:
        ws = manager(server, **options)
        async with ws, ws.events() as listener, anyio.create_task_group() as tg:

            async def collect_timed() -> None:
                async for event in listener:
                    events.append((anyio.current_time(), event))  # noqa: PERF401 - read while it runs

            tg.start_soon(collect_timed)
            with anyio.fail_after(LONG):
                if plan == "reconnect_after":
                    await ws.request_disconnect(reconnect_after=0.3)
                else:
                    await ws.request_disconnect()
                if plan == "schedule_reconnect":
                    await ws.schedule_reconnect(0.3)
                await server.wait_for_handshakes(2)
                assert await ws.wait_connected()
                await wait_until(lambda: isinstance(events[-1][1], Connected))
            tg.cancel_scope.cancel()
    kinds = [type(event) for _, event in events]
    assert kinds == [Disconnected, ReconnectScheduled, Connecting, Connected]
    (_, _), (announced_at, scheduled), (dialled_at, connecting), _ = events
    assert isinstance(scheduled, ReconnectScheduled)
    assert isinstance(connecting, Connecting)
    assert scheduled.attempt == connecting.attempt == 0  # a planned dial, not a backoff retry
    # should_reconnect is asked every 0.05 s: its 0.3 s are counted from when it answered.
    assert 0.3 - 0.05 - EPS <= scheduled.delay <= 0.3
    assert connecting.delay == scheduled.delay
    assert dialled_at - announced_at >= scheduled.delay - EPS


async def test_several_listeners_get_the_same_events() -> None:
    logs: list[list[LifecycleEvent]] = [[], [], []]
    async with open_test_server(echo=False) as server:
        ws = manager(server)
        listeners = [ws.events() for _ in logs]
        async with anyio.create_task_group() as tg:
            for listener, log in zip(listeners, logs, strict=True):
                tg.start_soon(collect, listener, log)
            with anyio.fail_after(LONG):
                async with ws:
                    for _ in range(2):
                        await drop_and_wait_for_reconnect(server, ws)
    assert len(logs[0]) == 11  # 2, 4 per drop, and the shutdown's Disconnected
    assert logs[0] == logs[1] == logs[2]
    assert all(a is b is c for a, b, c in zip(*logs, strict=True))  # the same frozen values


async def test_a_slow_listener_never_blocks_the_feed_and_counts_what_it_missed() -> None:
    everything: list[LifecycleEvent] = []
    async with open_test_server(echo=False) as server:
        ws = manager(server, sequence_of=seq_of)
        slow = ws.events(buffer=2)  # never read while the manager runs
        fast = ws.events(buffer=0)
        async with anyio.create_task_group() as events_tg:
            events_tg.start_soon(collect, fast, everything)
            async with feeding(server, ws) as (_, feed, consumer):
                for _ in range(5):
                    await drop_and_wait_for_reconnect(server, ws)
                    await consumer.wait_for_more()  # messages keep flowing
                dropped_while_running = slow.dropped
                last = await feed.stop()
                await consumer.wait_for(last)
    assert len(everything) >= 2 + 5 * 4  # GapDetected events come on top
    assert dropped_while_running > 0
    assert slow.dropped == len(everything) - 2
    with anyio.fail_after(LONG):
        kept = [event async for event in slow]  # what fitted: the two oldest; then it ends
    assert kept == everything[:2]
    assert [type(e) for e in kept] == [Connecting, Connected]


async def test_listeners_end_when_the_manager_shuts_down() -> None:
    ended: list[str] = []
    async with open_test_server(echo=False) as server:
        ws = manager(server)

        async def listen(name: str, listener: EventListener) -> None:
            async for _ in listener:
                pass
            ended.append(name)

        with anyio.fail_after(LONG):
            async with anyio.create_task_group() as tg, ws:
                tg.start_soon(listen, "a", ws.events())
                tg.start_soon(listen, "b", ws.events(buffer=1))
                await anyio.sleep(0.05)
                assert ended == []
                # Nothing cancels the listeners: shutting the manager down ends them.
            assert sorted(ended) == ["a", "b"]
            late = ws.events()  # after shutdown: ends at once
            assert [e async for e in late] == []


async def test_aclose_stops_one_listener_while_the_others_go_on() -> None:
    async with open_test_server(echo=False) as server:
        ws = manager(server)
        kept: list[LifecycleEvent] = []
        async with ws, anyio.create_task_group() as tg:
            stopped = ws.events()
            tg.start_soon(collect, ws.events(), kept)
            with anyio.fail_after(LONG):
                await stopped.aclose()
                await drop_and_wait_for_reconnect(server, ws)
                await wait_until(lambda: len(kept) >= 4)
                assert [e async for e in stopped] == []
                assert stopped.dropped == 0
            tg.cancel_scope.cancel()


async def test_the_peer_close_reason_is_masked_in_disconnected() -> None:
    secret = "token=hunter2"
    async with open_test_server(echo=False) as server:
        ws = manager(server)
        async with ws:
            async with ws.events() as listener:
                with anyio.fail_after(LONG):
                    await server.close_clients(4001, secret)
                    event = await listener.__anext__()
                    while not isinstance(event, Disconnected):
                        event = await listener.__anext__()
            assert ws.last_disconnect is not None
            assert ws.last_disconnect.close_reason == secret  # the record keeps it; events not
    assert (event.reason, event.code) == (R.SERVER_CLOSED, 4001)
    assert event.close_reason == f"<{len(secret)} characters>"
    assert "hunter2" not in repr(event)


# -- outage ledger and gaps -----------------------------------------------------------------------


async def test_each_drop_is_one_outage_naming_exactly_the_seqs_the_consumer_missed() -> None:
    drops = 3
    gaps: list[LifecycleEvent] = []
    async with open_test_server(echo=False) as server:
        ws = manager(
            server, sequence_of=seq_of, reconnect_strategy="fixed_delay", reconnect_delay=0.05
        )
        windows: list[tuple[float, float]] = []
        async with feeding(server, ws) as (tg, feed, consumer):
            tg.start_soon(collect, ws.events(buffer=0), gaps)
            for _ in range(drops):
                await consumer.wait_for_more(20)
                before = anyio.current_time()
                await drop_and_wait_for_reconnect(server, ws)
                windows.append((before, anyio.current_time()))
            # A message after the last outage, so that its gap ends: the feed may not have
            # written anything on the new connection yet (it once stopped right at the
            # reconnect, after a last broadcast that reached no client).
            await consumer.wait_for_more(1)
            last = await feed.stop()
            await consumer.wait_for(last)
            outages = ws.outages
            gaps_detected = ws.stats.gaps_detected
    seqs = consumer.seqs
    assert seqs == sorted(set(seqs))  # nothing repeated, nothing out of order
    lost = missing_ranges(seqs, last)
    assert len(lost) == drops  # the feed ran through every outage
    assert len(outages) == drops
    for outage, (before, after), (first, last_missing) in zip(outages, windows, lost, strict=True):
        assert (outage.reason, outage.code, outage.covered) == (R.NETWORK_ERROR, 1006, False)
        assert outage.end is not None
        assert before <= outage.start < outage.end <= after
        assert outage.duration is not None
        assert 0.05 - EPS <= outage.duration <= 0.05 + SLACK  # the reconnect delay, and a dial
        assert (outage.first_missing, outage.last_missing) == (first, last_missing)
    detected = [(e.first_missing, e.last_missing) for e in gaps if isinstance(e, GapDetected)]
    assert detected == lost
    assert gaps_detected == drops


async def test_a_gap_within_a_connection_fires_gap_detected_without_an_outage() -> None:
    async with open_test_server(echo=False) as server:
        ws = manager(server, sequence_of=seq_of)
        async with ws, ws.events() as listener:
            with anyio.fail_after(LONG):
                for n in (0, 1, 2, 5, 6, 10):  # the server skips 3-4 and 7-9
                    await server.broadcast(json.dumps({"seq": n}))
                received = [seq_of(await ws.receive()) for _ in range(6)]
                gaps = []
                while len(gaps) < 2:
                    event = await listener.__anext__()
                    if isinstance(event, GapDetected):
                        gaps.append((event.first_missing, event.last_missing))
            assert received == [0, 1, 2, 5, 6, 10]  # delivered as they came
            assert gaps == [(3, 4), (7, 9)]
            assert ws.stats.gaps_detected == 2
            assert ws.outages == ()


async def test_rotations_are_covered_records_and_drops_are_not() -> None:
    gaps: list[LifecycleEvent] = []
    async with open_test_server(echo=False) as server:
        ws = manager(server, sequence_of=seq_of, dedup_key=seq_of)
        async with feeding(server, ws) as (tg, feed, consumer):
            tg.start_soon(collect, ws.events(buffer=0), gaps)
            windows = []
            for step in ("rotate", "drop", "rotate"):
                await consumer.wait_for_more(10)
                before = anyio.current_time()
                if step == "rotate":
                    assert await ws.rotate()
                else:
                    await drop_and_wait_for_reconnect(server, ws)
                windows.append((before, anyio.current_time()))
            # A message after the last outage, so that its gap ends: the feed may not have
            # written anything on the new connection yet (it once stopped right at the
            # reconnect, after a last broadcast that reached no client).
            await consumer.wait_for_more(1)
            last = await feed.stop()
            await consumer.wait_for(last)
            outages = ws.outages
    rotation1, drop, rotation2 = outages
    for record, (before, after) in zip(outages, windows, strict=True):
        assert record.end is not None
        assert before <= record.start < record.end <= after
    for rotation in (rotation1, rotation2):
        assert rotation.covered
        assert (rotation.reason, rotation.code) == (R.USER_REQUESTED, 1000)  # rotate()
        assert (rotation.first_missing, rotation.last_missing) == (None, None)
    assert not drop.covered
    lost = missing_ranges(consumer.seqs, last)
    assert lost == [(drop.first_missing, drop.last_missing)]  # only the drop lost anything
    detected = [(e.first_missing, e.last_missing) for e in gaps if isinstance(e, GapDetected)]
    assert detected == lost
    assert consumer.seqs == sorted(set(consumer.seqs))
