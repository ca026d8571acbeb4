"""Proactive control: should_disconnect, should_reconnect, request_disconnect, schedule_reconnect,
wait_for_reconnect_window, and connect() after close()/kill() (SPEC 4 and 5).

Every test runs the real manager against the real testing server on both backends. Defect numbers
refer to replaced-system.md section 6.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from managed_websocket import ConnectionState, DisconnectReason
from managed_websocket.testing import open_test_server

from ._harness import EPS, WAIT, Recorder, as_kind, gaps, manager

pytestmark = pytest.mark.anyio

KINDS = ["sync", "async"]
S = ConnectionState
R = DisconnectReason


# -- should_disconnect ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_should_disconnect_true_closes_gracefully_with_callback_triggered(kind: str) -> None:
    checks = Recorder(lambda n: n >= 3)  # "no", "no", then "yes"
    reasons = Recorder()
    async with open_test_server() as server:
        ws = manager(
            server,
            should_disconnect=as_kind(kind, checks),
            disconnect_check_interval=0.05,
            on_disconnect=reasons,
        )
        async with ws:
            with anyio.fail_after(WAIT):
                await reasons.wait(1)
                await server.clients[0].wait_closed()
            assert reasons.args == [(R.CALLBACK_TRIGGERED,)]
            assert ws.last_disconnect is not None
            assert ws.last_disconnect.reason is R.CALLBACK_TRIGGERED
            assert (server.clients[0].ended_by, server.clients[0].close_code) == (
                "client_close",
                1000,
            )
            # Asked every interval while connected, and no more once it said yes.
            assert len(checks) == 3
            intervals = gaps(checks.times)
            assert all(gap >= 0.05 - EPS for gap in intervals), intervals
            # No should_reconnect: a proactive disconnect stays down.
            await anyio.sleep(0.1)
            assert ws.state is S.DISCONNECTED
            assert len(server.clients) == 1
            assert len(checks) == 3
            assert (ws.stats.proactive_disconnects, ws.stats.reactive_disconnects) == (1, 0)


@pytest.mark.parametrize("kind", KINDS)
async def test_should_disconnect_false_keeps_the_connection(kind: str) -> None:
    """D19: an async predicate is awaited; its coroutine object (truthy) is not taken as True."""
    checks = Recorder(lambda n: False)
    async with (
        open_test_server() as server,
        manager(
            server, should_disconnect=as_kind(kind, checks), disconnect_check_interval=0.03
        ) as ws,
    ):
        with anyio.fail_after(WAIT):
            await checks.wait(5)
        assert ws.is_connected
        assert len(server.clients) == 1
        assert not server.clients[0].closed
        assert ws.stats.disconnects == 0
        assert ws.stats.callback_errors == 0


# -- should_reconnect after a proactive disconnect ------------------------------------------------


@pytest.mark.parametrize(("kind", "auto_reconnect"), [("sync", False), ("async", True)])
async def test_should_reconnect_true_reconnects_at_the_first_poll(
    kind: str, auto_reconnect: bool
) -> None:
    asked = Recorder(lambda n: True)
    connected = Recorder()
    async with (
        open_test_server() as server,
        manager(
            server,
            should_reconnect=as_kind(kind, asked),
            reconnect_check_interval=0.05,
            auto_reconnect=auto_reconnect,
            on_connect=connected,
        ) as ws,
    ):
        with anyio.fail_after(WAIT):
            await ws.request_disconnect()
            stopped = anyio.current_time()
            await server.wait_for_handshakes(2)
            await connected.wait(2)
        assert ws.is_connected
        assert len(asked) == 1
        assert asked.times[0] - stopped >= 0.05 - EPS  # polled after one interval
        assert connected.times[1] >= asked.times[0]
        assert server.clients[0].close_code == 1000
        assert ws.stats.connects == 2


@pytest.mark.parametrize(
    ("kind", "auto_reconnect"), [("sync", True), ("sync", False), ("async", False)]
)
async def test_should_reconnect_false_stays_down_and_keeps_asking_then_a_delay_is_honoured(
    kind: str, auto_reconnect: bool
) -> None:
    """B8: with auto_reconnect=False the predicate was never called and wait_disconnected() hung."""
    states: list[ConnectionState] = []

    def verdict(n: int) -> Any:
        states.append(ws.state)
        return 0.2 if n == 4 else False  # three times "not yet", then "in 0.2 s"

    asked = Recorder(verdict)
    connected = Recorder()
    async with open_test_server() as server:
        ws = manager(
            server,
            should_reconnect=as_kind(kind, asked),
            reconnect_check_interval=0.05,
            auto_reconnect=auto_reconnect,
            on_connect=connected,
        )
        async with ws:
            with anyio.fail_after(WAIT):
                await ws.request_disconnect()
                assert await ws.wait_disconnected()
                await connected.wait(2)
            assert len(asked) == 4  # not asked again while the delay ran
            assert states == [S.DISCONNECTED] * 4
            intervals = gaps(asked.times)
            assert all(gap >= 0.05 - EPS for gap in intervals), intervals
            assert connected.times[1] - asked.times[3] >= 0.2 - EPS
            assert len(server.clients) == 2
            assert ws.is_connected


@pytest.mark.parametrize("kind", KINDS)
async def test_should_reconnect_is_polled_after_a_reactive_disconnect_without_auto_reconnect(
    kind: str,
) -> None:
    asked = Recorder(lambda n: n >= 2)
    async with (
        open_test_server() as server,
        manager(
            server,
            should_reconnect=as_kind(kind, asked),
            reconnect_check_interval=0.05,
            auto_reconnect=False,
        ) as ws,
    ):
        with anyio.fail_after(WAIT):
            await server.drop_clients()
            await asked.wait(1)
            assert ws.state is S.DISCONNECTED
            assert len(server.clients) == 1
            await server.wait_for_handshakes(2)
            assert await ws.wait_connected()
        assert len(asked) == 2
        assert ws.last_disconnect is not None
        assert ws.last_disconnect.reason is R.NETWORK_ERROR


async def test_without_auto_reconnect_or_predicate_a_reactive_disconnect_stays_down() -> None:
    async with open_test_server() as server, manager(server, auto_reconnect=False) as ws:
        with anyio.fail_after(WAIT):
            await server.drop_clients()
            assert await ws.wait_disconnected()
        await anyio.sleep(0.2)
        assert ws.state is S.DISCONNECTED
        assert ws.is_recoverable
        assert len(server.clients) == 1
        with anyio.fail_after(WAIT):
            await ws.connect()
        assert len(server.clients) == 2


# -- request_disconnect -----------------------------------------------------------------------


async def test_request_disconnect_with_reconnect_after_returns_at_once() -> None:
    """D17: the old request_disconnect(reconnect_after=X) blocked the caller for X seconds."""
    async with open_test_server() as server, manager(server) as ws:
        with anyio.fail_after(WAIT):
            start = anyio.current_time()
            await ws.request_disconnect(reconnect_after=0.3)
            returned = anyio.current_time()
            state_on_return = ws.state
            assert await ws.wait_connected()
            reconnected = anyio.current_time()
        assert returned - start < 0.15
        assert state_on_return is not S.CONNECTED
        assert 0.3 - EPS <= reconnected - start < 2.0
        assert (server.clients[0].ended_by, server.clients[0].close_code) == (
            "client_close",
            1000,
        )
        assert len(server.clients) == 2
        assert ws.last_disconnect is not None
        assert ws.last_disconnect.reason is R.USER_REQUESTED
        assert ws.stats.proactive_disconnects == 1


async def test_request_disconnect_without_a_plan_stays_down_until_connect() -> None:
    async with open_test_server() as server, manager(server) as ws:
        with anyio.fail_after(WAIT):
            await ws.request_disconnect(reason=R.SCHEDULED)
        assert ws.state is S.DISCONNECTED
        await anyio.sleep(0.2)
        assert ws.state is S.DISCONNECTED
        assert ws.is_recoverable
        assert len(server.clients) == 1
        assert ws.last_disconnect is not None
        assert ws.last_disconnect.reason is R.SCHEDULED
        with anyio.fail_after(WAIT):
            await ws.connect()
            await ws.send("after")
            assert await ws.receive() == "after"
        assert len(server.clients) == 2


async def test_request_disconnect_is_ignored_when_not_connected() -> None:
    async with open_test_server() as server, manager(server) as ws:
        with anyio.fail_after(WAIT):
            await ws.close()
            await ws.request_disconnect(reconnect_after=0.01)
        await anyio.sleep(0.1)
        assert ws.state is S.DISCONNECTED
        assert len(server.clients) == 1


# -- schedule_reconnect -----------------------------------------------------------------------


async def test_schedule_reconnect_from_disconnected_runs_in_the_manager() -> None:
    """D17: the old schedule_reconnect(X) slept X seconds and reconnected in the caller's task."""
    async with open_test_server() as server, manager(server) as ws:
        with anyio.fail_after(WAIT):
            await ws.request_disconnect()
            start = anyio.current_time()
            await ws.schedule_reconnect(0.2)
            returned = anyio.current_time()
            assert not ws.is_connected
            await server.wait_for_handshakes(2)
            reconnected = anyio.current_time()
            assert await ws.wait_connected()
        assert returned - start < 0.1
        assert reconnected - start >= 0.2 - EPS
        assert len(server.clients) == 2


async def test_schedule_reconnect_shortens_a_backoff_wait() -> None:
    async with (
        open_test_server() as server,
        manager(server, reconnect_delay=5.0, max_reconnect_delay=5.0) as ws,
    ):
        with anyio.fail_after(WAIT):
            await server.drop_clients()
            assert await ws.wait_disconnected()
        assert ws.state is S.RECONNECTING
        with anyio.fail_after(1.0):  # far less than the 5 s backoff
            await ws.schedule_reconnect(0.05)
            await server.wait_for_handshakes(2)
            assert await ws.wait_connected()
        assert len(server.clients) == 2


async def test_schedule_reconnect_is_ignored_while_connected() -> None:
    async with open_test_server() as server, manager(server) as ws:
        await ws.schedule_reconnect(0.0)
        await anyio.sleep(0.1)
        assert ws.is_connected
        assert len(server.clients) == 1
        assert ws.stats.disconnects == 0


# -- wait_for_reconnect_window --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "answer", "timeout", "expected", "min_elapsed", "max_elapsed"),
    [
        ("sync", True, 1.0, True, 0.0, 0.1),
        ("async", True, 1.0, True, 0.0, 0.1),
        ("async", 0.2, 1.0, True, 0.2, 0.6),
        ("sync", False, 0.3, False, 0.3, 0.6),
        ("async", False, 0.3, False, 0.3, 0.6),
        ("sync", 5.0, 0.2, False, 0.2, 0.5),  # the window would open after the timeout
    ],
    ids=["true-sync", "true-async", "delay-async", "false-sync", "false-async", "beyond-timeout"],
)
async def test_wait_for_reconnect_window(
    kind: str,
    answer: object,
    timeout: float,
    expected: bool,
    min_elapsed: float,
    max_elapsed: float,
) -> None:
    # A Recorder defines __len__, so it is falsy until first called: the predicate must be
    # chosen with "is None", not "or" (this caught that bug).
    asked = Recorder(lambda n: answer)
    async with open_test_server() as server, manager(server, reconnect_check_interval=0.05) as ws:
        with anyio.fail_after(WAIT):
            start = anyio.current_time()
            result = await ws.wait_for_reconnect_window(as_kind(kind, asked), timeout=timeout)
            elapsed = anyio.current_time() - start
        assert result is expected
        assert min_elapsed - EPS <= elapsed < max_elapsed
        if answer is False:
            assert len(asked) >= 3  # asked again every reconnect_check_interval
            intervals = gaps(asked.times)
            assert all(gap >= 0.05 - EPS for gap in intervals), intervals
        else:
            assert len(asked) == 1
        # It only waits: the connection is untouched.
        assert ws.is_connected
        assert len(server.clients) == 1


async def test_wait_for_reconnect_window_uses_the_configured_predicate() -> None:
    asked = Recorder(lambda n: n >= 2)
    async with open_test_server() as server:
        async with manager(server, reconnect_check_interval=0.02, should_reconnect=asked) as ws:
            with anyio.fail_after(WAIT):
                assert await ws.wait_for_reconnect_window()
            assert len(asked) == 2
        async with manager(server) as plain:
            with pytest.raises(ValueError, match="should_reconnect"):
                await plain.wait_for_reconnect_window(timeout=0.1)


# -- connect() after close() and kill() ---------------------------------------------------------


@pytest.mark.parametrize("operation", ["close", "kill"])
async def test_connect_reopens_after_close_and_kill(operation: str) -> None:
    async with open_test_server() as server, manager(server) as ws:
        with anyio.fail_after(WAIT):
            await getattr(ws, operation)()
            await server.clients[0].wait_closed()
        assert ws.state is S.DISCONNECTED
        assert ws.is_recoverable
        await anyio.sleep(0.1)
        assert len(server.clients) == 1  # neither reconnects by itself
        with anyio.fail_after(WAIT):
            await ws.connect()
            assert ws.is_connected
            await ws.send({"again": True})
            assert await ws.receive() == {"again": True}
            await ws.connect()  # already connected: returns at once
        assert len(server.clients) == 2
        assert server.clients[1].messages == ['{"again":true}']
