"""What a listener can see (issue 16, item 5), against the real testing server, on both backends:
a failed dial publishes ``ConnectFailed`` with its masked error; ``on_event=`` sees every event
from the first ``Connecting`` on, even with ``async with open_managed_websocket(...)``; outages
carry wall-clock times; a manual ``rotate()`` says USER_REQUESTED.
"""

from __future__ import annotations

import logging
import socket
import time

import anyio
import pytest

from managed_websocket import (
    Connected,
    ConnectFailed,
    Connecting,
    Disconnected,
    DisconnectReason,
    LifecycleEvent,
    ReconnectScheduled,
    RotationCompleted,
    RotationStarted,
    WebSocketHandshakeError,
    open_managed_websocket,
)
from managed_websocket.testing import open_test_server

from ._harness import EPS, FAST, WAIT, as_kind, manager, wait_until

pytestmark = pytest.mark.anyio

R = DisconnectReason
SECRET = "s3cret"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- ConnectFailed --------------------------------------------------------------------------------


async def test_each_failed_dial_publishes_connect_failed_with_its_masked_error() -> None:
    events: list[LifecycleEvent] = []
    async with open_test_server(echo=False) as server:
        server.refuse_handshakes(503, body=f"busy, see ws://u:{SECRET}@h/".encode(), count=2)
        ws = manager(server, path=f"/ws?token={SECRET}", on_event=events.append)
        with anyio.fail_after(WAIT):
            async with ws:
                await wait_until(lambda: any(isinstance(e, Connected) for e in events))
    kinds = [type(e) for e in events]
    assert kinds[:8] == [
        Connecting,
        ConnectFailed,
        ReconnectScheduled,
        Connecting,
        ConnectFailed,
        ReconnectScheduled,
        Connecting,
        Connected,
    ]
    failures = [e for e in events if isinstance(e, ConnectFailed)]
    assert [f.attempt for f in failures] == [0, 1]  # the attempt its Connecting announced
    for failure in failures:
        assert failure.error_type == "WebSocketHandshakeError"
        assert "503" in failure.error
        assert failure.fatal is False
        assert failure.url == f"{server.url}/ws?token=***"
        assert SECRET not in repr(failure)


async def test_a_refused_tcp_dial_is_published_too() -> None:
    events: list[LifecycleEvent] = []
    url = f"ws://127.0.0.1:{closed_port()}/"
    ws = open_managed_websocket(url, **FAST, max_reconnect_attempts=1, on_event=events.append)
    with anyio.fail_after(WAIT), pytest.raises(Exception, match="1 attempt"):
        async with ws:
            pass
    failures = [e for e in events if isinstance(e, ConnectFailed)]
    assert [f.attempt for f in failures] == [0, 1]
    assert {f.error_type for f in failures} == {"WebSocketConnectionRefusedError"}
    assert all(f.error == "connection refused" for f in failures)


async def test_a_fatal_refusal_is_published_as_fatal_before_the_manager_fails() -> None:
    events: list[LifecycleEvent] = []
    async with open_test_server(echo=False) as server:
        server.refuse_handshakes(403, count=None)
        ws = manager(server, on_event=events.append)
        with anyio.fail_after(WAIT), pytest.raises(WebSocketHandshakeError):
            async with ws:
                pass
    (failure,) = [e for e in events if isinstance(e, ConnectFailed)]
    assert (failure.attempt, failure.fatal, failure.error_type) == (
        0,
        True,
        "WebSocketHandshakeError",
    )
    assert "403" in failure.error


# -- on_event -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_on_event_sees_the_first_connected_with_async_with(kind: str) -> None:
    seen: list[LifecycleEvent] = []
    async with open_test_server(echo=False) as server:
        url = server.url + "/ws"
        with anyio.fail_after(WAIT):
            async with open_managed_websocket(url, **FAST, on_event=as_kind(kind, seen.append)):
                await wait_until(lambda: len(seen) >= 2)
                assert [type(e) for e in seen] == [Connecting, Connected]
                await server.drop_clients()
                await wait_until(lambda: len(seen) >= 6)
            # Everything published before the manager stopped was handed over by now.
            assert [type(e) for e in seen] == [
                Connecting,
                Connected,
                Disconnected,
                ReconnectScheduled,
                Connecting,
                Connected,
                Disconnected,
            ]
    assert isinstance(seen[-1], Disconnected)
    assert seen[-1].reason is R.USER_REQUESTED


async def test_an_on_event_that_raises_is_counted_and_logged_and_the_events_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[LifecycleEvent] = []

    def flaky(event: LifecycleEvent) -> None:
        calls.append(event)
        broken = isinstance(event, Connecting)  # a listener bug on every dial
        if broken:
            raise ValueError("listener bug")

    async with open_test_server(echo=False) as server:
        ws = manager(server, on_event=flaky)
        with anyio.fail_after(WAIT):
            async with ws:
                await server.drop_clients()
                await wait_until(lambda: ws.stats.connects >= 2 and ws.is_connected)
                await wait_until(lambda: len(calls) >= 6)
                assert ws.stats.callback_errors == 2  # the two Connecting
    assert any("on_event callback raised" in r.getMessage() and r.exc_info for r in caplog.records)
    assert sum(isinstance(e, Connected) for e in calls) == 2


async def test_on_event_must_be_callable() -> None:
    with pytest.raises(TypeError, match="on_event must be callable"):
        open_managed_websocket("ws://127.0.0.1:1/", on_event=42)  # type: ignore[typeddict-item]


async def test_a_hanging_on_event_does_not_hold_the_shutdown_past_close_timeout() -> None:
    async def hang(event: LifecycleEvent) -> None:
        if isinstance(event, Disconnected):
            await anyio.sleep_forever()

    async with open_test_server(echo=False) as server:
        ws = manager(server, on_event=hang, close_timeout=0.2)
        with anyio.fail_after(WAIT):
            async with ws:
                leaving = anyio.current_time()
            took = anyio.current_time() - leaving
        assert ws.is_shutdown
    # The callback hangs on the shutdown's Disconnected: close_timeout ends it, not before.
    assert 0.2 - EPS <= took <= 0.2 + 1.0


# -- wall-clock outages ---------------------------------------------------------------------------


async def test_outages_carry_wall_clock_times_matching_the_loop_clock() -> None:
    async with open_test_server(echo=False) as server:
        ws = manager(server, reconnect_strategy="fixed_delay", reconnect_delay=0.1)
        with anyio.fail_after(WAIT):
            async with ws:
                before = time.time()
                await server.drop_clients()
                await wait_until(lambda: ws.stats.connects >= 2 and ws.is_connected)
                after = time.time()
                (outage,) = ws.outages
    assert outage.started_at is not None
    assert outage.ended_at is not None
    assert outage.duration is not None
    assert before - 0.05 <= outage.started_at < outage.ended_at <= after + 0.05
    # Both clocks tell the same duration (to the timer granularity and scheduling).
    assert abs((outage.ended_at - outage.started_at) - outage.duration) < 0.05


# -- rotate() says USER_REQUESTED -----------------------------------------------------------------


async def test_a_manual_rotation_is_user_requested_in_log_event_and_ledger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="managed_websocket")
    events: list[LifecycleEvent] = []
    async with open_test_server(echo=False) as server:
        ws = manager(server, on_event=events.append, is_warm=lambda message: True)
        with anyio.fail_after(WAIT):
            async with ws, anyio.create_task_group() as tg:

                async def feed() -> None:
                    while True:
                        await server.broadcast('{"x": 1}')
                        await anyio.sleep(0.01)

                tg.start_soon(feed)
                assert await ws.rotate()
                tg.cancel_scope.cancel()
            (record,) = ws.outages
    (started,) = [e for e in events if isinstance(e, RotationStarted)]
    assert started.reason is R.USER_REQUESTED
    assert any(isinstance(e, RotationCompleted) for e in events)
    assert (record.reason, record.covered) == (R.USER_REQUESTED, True)
    assert record.started_at is not None
    assert record.ended_at is not None
    rotating = [r.getMessage() for r in caplog.records if "rotating" in r.getMessage()]
    assert rotating
    assert all("USER_REQUESTED" in m for m in rotating)
    assert not any("SCHEDULED" in m for m in rotating)
