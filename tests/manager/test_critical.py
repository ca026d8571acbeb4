"""Critical sections against the real testing server, on both backends: ``async with
ws.critical()`` holds every proactive disconnect (rotation, max_connection_age, request_disconnect,
should_disconnect) until the last section closes or ``max_defer`` runs out, and a reactive
disconnect that hits a section is reported as such. Every wait is bounded by ``fail_after``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

from managed_websocket import (
    DisconnectDeferred,
    Disconnected,
    DisconnectReason,
    LifecycleEvent,
    ManagedWebSocket,
    RotationCompleted,
    RotationStarted,
    WebSocketClosedError,
)
from managed_websocket.testing import WebSocketTestServer, open_test_server

from ._harness import EPS, manager, wait_until

pytestmark = pytest.mark.anyio

R = DisconnectReason
LONG = 30.0
SLACK = 0.3
HOLD = 0.2  # how long a test keeps a section open before closing it


class EventLog:
    def __init__(self, ws: ManagedWebSocket) -> None:
        self.listener = ws.events(buffer=0)
        self.events: list[LifecycleEvent] = []

    async def run(self) -> None:
        async for event in self.listener:
            self.events.append(event)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@asynccontextmanager
async def running(
    server: WebSocketTestServer, ws: ManagedWebSocket, *, feed: bool = True
) -> AsyncIterator[tuple[anyio.abc.TaskGroup, EventLog]]:
    """Run the manager, an event log and (so new connections warm up) a 2 ms broadcast feed."""
    log = EventLog(ws)

    async def broadcast() -> None:
        n = 0
        while True:
            await server.broadcast(json.dumps({"seq": n}))
            n += 1
            await anyio.sleep(0.002)

    async with ws, anyio.create_task_group() as tg:
        tg.start_soon(log.run)
        if feed:
            tg.start_soon(broadcast)
        with anyio.fail_after(LONG):
            yield tg, log
        tg.cancel_scope.cancel()


class Outcome:
    """Runs an operation in a task; records when it finished and what it returned."""

    def __init__(self) -> None:
        self.value: Any = None
        self.done_at: float | None = None

    def start(self, tg: anyio.abc.TaskGroup, operation: Any, *args: Any) -> None:
        async def run() -> None:
            self.value = await operation(*args)
            self.done_at = anyio.current_time()

        tg.start_soon(run)

    async def wait(self) -> float:
        await wait_until(lambda: self.done_at is not None)
        assert self.done_at is not None
        return self.done_at


# -- rotation -------------------------------------------------------------------------------------


async def test_rotation_inside_a_section_completes_only_after_it_closes() -> None:
    async with open_test_server(echo=False) as server:
        ws = manager(server)
        async with running(server, ws) as (tg, log):
            rotation = Outcome()
            async with ws.critical():
                rotation.start(tg, ws.rotate)
                await anyio.sleep(HOLD)
                assert rotation.done_at is None
                assert len(server.clients) == 1  # it has not even dialled yet
                assert log.of(RotationStarted) == []
                exited = anyio.current_time()
            done = await rotation.wait()
        assert rotation.value is True
        assert done >= exited
        (deferred,) = log.of(DisconnectDeferred)
        assert deferred.reason is R.USER_REQUESTED
        assert deferred.forced is False
        assert HOLD - EPS <= deferred.waited <= HOLD + SLACK
        # The deferral is reported before the rotation starts.
        kinds = [type(e) for e in log.events]
        assert kinds.index(DisconnectDeferred) < kinds.index(RotationStarted)


async def test_nested_sections_in_several_tasks_hold_the_rotation_until_the_last_closes() -> None:
    async with open_test_server(echo=False) as server:
        ws = manager(server)
        async with running(server, ws) as (tg, log):
            release = {name: anyio.Event() for name in ("inner", "outer", "other")}
            closed: dict[str, float] = {}
            entered = anyio.Event()

            async def nested() -> None:
                async with ws.critical():
                    async with ws.critical():
                        entered.set()
                        await release["inner"].wait()
                    closed["inner"] = anyio.current_time()
                    await release["outer"].wait()
                closed["outer"] = anyio.current_time()

            async def other() -> None:
                async with ws.critical():
                    await release["other"].wait()
                closed["other"] = anyio.current_time()

            tg.start_soon(nested)
            tg.start_soon(other)
            await entered.wait()
            await anyio.sleep(0.01)
            rotation = Outcome()
            rotation.start(tg, ws.rotate)
            for name in ("inner", "outer", "other"):
                await anyio.sleep(0.1)
                assert rotation.done_at is None, f"rotated before {name!r} closed"
                release[name].set()
            done = await rotation.wait()
        assert rotation.value is True
        assert done >= max(closed.values())
        (deferred,) = log.of(DisconnectDeferred)
        assert deferred.forced is False
        assert deferred.waited >= 0.3 - EPS


async def test_max_defer_forces_the_rotation_and_says_so() -> None:
    async with open_test_server(echo=False) as server:
        ws = manager(server, max_defer=0.2)
        async with running(server, ws) as (_, log), ws.critical():
            start = anyio.current_time()
            assert await ws.rotate() is True  # inside the section: forced after max_defer
            elapsed = anyio.current_time() - start
        assert 0.2 - EPS <= elapsed <= 0.2 + SLACK
        # One report, even though the switch also checks the sections: max_defer bounds both.
        (deferred,) = log.of(DisconnectDeferred)
        assert deferred.reason is R.USER_REQUESTED
        assert deferred.forced is True
        assert 0.2 - EPS <= deferred.waited <= 0.2 + SLACK
        assert len(log.of(RotationCompleted)) == 1


async def test_a_section_opened_while_the_new_connection_warms_up_holds_the_switch() -> None:
    """Regression: sections were only checked before dialling. A section opened while the new
    connection warmed up (is_warm can take long) did not hold the switch, which closes the old
    connection — the one an in-flight request is waiting on."""
    async with open_test_server(echo=False) as server:
        ws = manager(server, is_warm=lambda message: message.get("warm") is True)
        async with running(server, ws, feed=False) as (tg, log):
            rotation = Outcome()
            rotation.start(tg, ws.rotate)
            await server.wait_for_handshakes(2)
            async with ws.critical():
                await server.send(server.clients[1], json.dumps({"warm": True}))
                await anyio.sleep(HOLD)
                assert rotation.done_at is None
                assert not server.clients[0].closed  # the old connection is still there
                assert ws.stats.rotations == 0
                exited = anyio.current_time()
            done = await rotation.wait()
            await server.clients[0].wait_closed()
        assert rotation.value is True
        assert done >= exited
        (deferred,) = log.of(DisconnectDeferred)
        assert (deferred.reason, deferred.forced) == (R.USER_REQUESTED, False)
        assert deferred.waited >= HOLD - EPS


async def test_max_defer_bounds_the_whole_rotation_and_a_forced_switch_is_reported() -> None:
    """The switch waits only for what is left of max_defer, counted from the rotation's start;
    switching inside a section once it has run out is reported as forced."""
    async with open_test_server(echo=False) as server:
        ws = manager(server, is_warm=lambda message: message.get("warm") is True, max_defer=0.1)
        async with running(server, ws, feed=False) as (tg, log):
            rotation = Outcome()
            rotation.start(tg, ws.rotate)
            await server.wait_for_handshakes(2)  # no section was open at the start
            async with ws.critical():
                await anyio.sleep(0.15)  # max_defer is over
                sent = anyio.current_time()
                await server.send(server.clients[1], json.dumps({"warm": True}))
                done = await rotation.wait()  # inside the section
        assert rotation.value is True
        assert done - sent <= SLACK
        (deferred,) = log.of(DisconnectDeferred)
        assert (deferred.reason, deferred.forced) == (R.USER_REQUESTED, True)
        assert deferred.waited <= SLACK


async def test_a_scheduled_rotation_waits_for_a_section_too() -> None:
    async with open_test_server(echo=False) as server:
        ws = manager(server, max_connection_age=0.1)
        async with running(server, ws) as (_, log):
            async with ws.critical():
                await anyio.sleep(0.3)  # well past max_connection_age
                assert log.of(RotationStarted) == []
                assert ws.stats.rotations == 0
                exited = anyio.current_time()
            await wait_until(lambda: ws.stats.rotations >= 1)
        deferred = log.of(DisconnectDeferred)[0]
        assert (deferred.reason, deferred.forced) == (R.SCHEDULED, False)
        assert deferred.waited >= 0.3 - 0.1 - EPS
        assert log.of(RotationStarted)[0].at >= deferred.at
        assert exited > 0


# -- request_disconnect and should_disconnect -----------------------------------------------------


async def test_request_disconnect_waits_for_the_section() -> None:
    async with open_test_server(echo=False) as server:
        ws = manager(server)
        async with running(server, ws, feed=False) as (tg, log):
            request = Outcome()
            async with ws.critical():
                request.start(tg, ws.request_disconnect)
                await anyio.sleep(HOLD)
                assert request.done_at is None
                assert ws.is_connected
                assert not server.clients[0].closed
                exited = anyio.current_time()
            done = await request.wait()
            assert not ws.is_connected
            await server.clients[0].wait_closed()
        assert done >= exited
        assert server.clients[0].close_code == 1000
        (deferred,) = log.of(DisconnectDeferred)
        assert (deferred.reason, deferred.forced) == (R.USER_REQUESTED, False)
        assert deferred.waited >= HOLD - EPS
        (disconnected,) = log.of(Disconnected)
        assert disconnected.reason is R.USER_REQUESTED
        assert disconnected.in_critical_section is False  # proactive: never "hit" a section


async def test_request_disconnect_is_forced_after_max_defer() -> None:
    async with open_test_server(echo=False) as server:
        ws = manager(server, max_defer=0.15)
        async with running(server, ws, feed=False) as (_, log), ws.critical():
            start = anyio.current_time()
            await ws.request_disconnect()
            elapsed = anyio.current_time() - start
            assert not ws.is_connected
        assert 0.15 - EPS <= elapsed <= 0.15 + SLACK
        (deferred,) = log.of(DisconnectDeferred)
        assert (deferred.reason, deferred.forced) == (R.USER_REQUESTED, True)
        (disconnected,) = log.of(Disconnected)
        assert disconnected.in_critical_section is False  # proactive, even though forced


async def test_should_disconnect_waits_for_the_section() -> None:
    reasons: list[DisconnectReason] = []
    said_yes: list[float] = []
    want = False

    def should_disconnect() -> bool:
        if want and not said_yes:
            said_yes.append(anyio.current_time())
        return want

    async with open_test_server(echo=False) as server:
        ws = manager(
            server,
            should_disconnect=should_disconnect,
            disconnect_check_interval=0.03,
            on_disconnect=reasons.append,
        )
        async with running(server, ws, feed=False) as (_, log):
            async with ws.critical():
                want = True  # from now on the predicate says "disconnect"
                await wait_until(lambda: bool(said_yes))
                await anyio.sleep(HOLD)
                assert ws.is_connected
                assert reasons == []
                exited = anyio.current_time()
            await server.clients[0].wait_closed()
            ended = anyio.current_time()
        assert reasons == [R.CALLBACK_TRIGGERED]
        assert ended >= exited
        (deferred,) = log.of(DisconnectDeferred)
        assert (deferred.reason, deferred.forced) == (R.CALLBACK_TRIGGERED, False)
        assert deferred.waited >= exited - said_yes[0] - EPS


# -- reactive disconnects -------------------------------------------------------------------------


@pytest.mark.parametrize("inside", [True, False])
async def test_a_server_drop_reports_whether_it_hit_a_section(inside: bool) -> None:
    async with open_test_server(echo=False) as server:
        ws = manager(server, reconnect_delay=0.05)
        async with running(server, ws, feed=False) as (_, log):
            if inside:
                async with ws.critical():
                    await server.drop_clients()
                    await wait_until(lambda: bool(log.of(Disconnected)))
            else:
                await server.drop_clients()
                await wait_until(lambda: bool(log.of(Disconnected)))
            assert await ws.wait_connected(LONG)  # the manager reconnects as usual
        (disconnected,) = log.of(Disconnected)
        assert (disconnected.reason, disconnected.code) == (R.NETWORK_ERROR, 1006)
        assert disconnected.in_critical_section is inside
        assert log.of(DisconnectDeferred) == []  # a reactive disconnect is never held


async def test_a_section_left_because_its_send_failed_is_still_reported() -> None:
    """Regression: whether a section was open was checked only when the disconnect was
    reported, after the socket had been closed. Code in a section that sends leaves it as soon
    as its send fails, which is before that: the drop was reported as outside any section."""
    async with open_test_server(echo=False) as server:
        ws = manager(server, reconnect_delay=0.05)
        async with running(server, ws, feed=False) as (tg, log):
            sending = anyio.Event()
            left: list[BaseException] = []

            async def send_orders() -> None:
                async with ws.critical():
                    try:
                        while True:
                            await ws.send("order")
                            sending.set()
                            await anyio.lowlevel.checkpoint()  # the next order at once
                    except WebSocketClosedError as exc:
                        left.append(exc)

            tg.start_soon(send_orders)
            await sending.wait()
            await server.drop_clients()
            await wait_until(lambda: bool(log.of(Disconnected)))
            await wait_until(lambda: bool(left))  # the section was left on the error
        (disconnected,) = log.of(Disconnected)
        assert disconnected.reason is R.NETWORK_ERROR
        assert disconnected.in_critical_section is True
