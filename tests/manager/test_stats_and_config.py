"""Statistics, disconnect alerts, callbacks that raise, option resolution through the manager, and
secrets kept out of logs, reprs and errors (SPEC 2, 3 and 5).

Every async test runs the real manager against the real testing server on both backends. Defect
numbers refer to replaced-system.md section 6.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import traceback
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from managed_websocket import (
    ConnectionState,
    DisconnectReason,
    ManagedWebSocket,
    WebSocketError,
    WebSocketHandshakeError,
    WebSocketInvalidURLError,
    WebSocketReconnectError,
)
from managed_websocket._settings import Settings
from managed_websocket.testing import open_test_server

from ._harness import FAST, WAIT, Recorder, as_kind, manager, wait_until

pytestmark = pytest.mark.anyio

S = ConnectionState
R = DisconnectReason
KINDS = ["sync", "async"]


@pytest.fixture(autouse=True)
def _capture_library_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="managed_websocket")


# -- statistics -------------------------------------------------------------------------------


async def test_stats_after_a_known_exchange() -> None:
    async with open_test_server() as server, manager(server, ping_interval=None) as ws:
        started = time.time()
        with anyio.fail_after(WAIT):
            await ws.send({"k": 1})  # '{"k":1}': 7
            await ws.send(b"\x00\x01\x02")  # 3
            assert await ws.receive() == {"k": 1}
            assert await ws.receive() == b"\x00\x01\x02"
            await server.broadcast("hello")  # 5
            assert await ws.receive() == "hello"
        stats = ws.stats
        assert (stats.messages_sent, stats.bytes_sent) == (2, 10)
        assert (stats.messages_received, stats.bytes_received) == (3, 15)
        assert (stats.connects, stats.disconnects, stats.reconnect_attempts) == (1, 0, 0)
        assert stats.last_message_time >= started
        assert ws.connection_duration > 0

        with anyio.fail_after(WAIT):
            await ws.request_disconnect(reconnect_after=0)  # proactive, no backoff attempt
            await server.wait_for_handshakes(2)
            assert await ws.wait_connected()
            await server.drop_clients()  # reactive: one backoff attempt
            await server.wait_for_handshakes(3)
            assert await ws.wait_connected()
        assert (stats.connects, stats.disconnects) == (3, 2)
        assert (stats.proactive_disconnects, stats.reactive_disconnects) == (1, 1)
        assert stats.reconnect_attempts == 1
        assert stats.last_connect_time >= stats.last_disconnect_time >= started
        assert stats.messages_dropped == 0
        assert stats.uptime > 0
        assert 0 < ws.connection_duration < stats.uptime

        stats.reset()
        assert (stats.connects, stats.messages_received, stats.bytes_sent) == (0, 0, 0)
        assert stats.connection_time > 0  # the current connection's start is kept
        with anyio.fail_after(WAIT):
            await ws.close()
        # D16: the old connection_time kept growing after a disconnect.
        assert ws.connection_duration == 0.0
        assert stats.connection_time == 0.0
        assert (stats.disconnects, stats.proactive_disconnects) == (1, 1)


async def test_latency_comes_from_keepalive_pings() -> None:
    async with open_test_server() as server, manager(server, ping_interval=0.1) as ws:
        assert ws.latency is None
        with anyio.fail_after(WAIT):
            await wait_until(lambda: ws.latency is not None)
        assert ws.latency is not None
        assert 0 < ws.latency < 1.0
        assert ws.stats.latency == ws.latency
        assert server.clients[0].pings_received >= 1
        assert ws.stats.disconnects == 0


# -- on_disconnect_alert --------------------------------------------------------------------------


class _ZeroClockLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose clock starts at 0, like a host that has just booted."""

    def __init__(self) -> None:
        self._zero = time.monotonic()
        super().__init__()

    def time(self) -> float:
        return time.monotonic() - self._zero


class TestDisconnectAlertsFromClockZero:
    """B12: the old throttle started its last-alert time at 0.0 on the monotonic clock, so the
    first alert was swallowed on a host up for less than the interval."""

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> Any:
        if request.param == "asyncio":
            return ("asyncio", {"loop_factory": _ZeroClockLoop})
        return ("trio", {"clock": MockClock(rate=1.0)})  # real speed, starting at 0

    async def test_first_alert_at_once_then_aggregated(self) -> None:
        assert anyio.current_time() < 0.5  # the clock really starts near 0
        alerts = Recorder()
        async with (
            open_test_server() as server,
            manager(
                server,
                on_disconnect_alert=alerts,
                disconnect_alert_interval=0.6,
                stable_connection_time=0,
            ) as ws,
        ):
            with anyio.fail_after(WAIT):
                dropped = anyio.current_time()
                await server.drop_clients()
                await alerts.wait(1)
                assert alerts.times[0] - dropped < 0.2
                assert alerts.times[0] < 0.6  # inside the first interval, at clock ~0
                assert alerts.args == [(R.NETWORK_ERROR, 1)]
                for n in (3, 4):  # two more, inside the interval: held back
                    await server.wait_for_handshakes(n - 1)
                    await server.drop_clients()
                await server.wait_for_handshakes(4)
                assert anyio.current_time() - alerts.times[0] < 0.6
                assert len(alerts) == 1
                # When the interval is over, the two held back are reported, with no new drop.
                await alerts.wait(2)
                assert alerts.times[1] - alerts.times[0] >= 0.6 - 0.01
                await server.drop_clients()  # inside the next interval: held, then flushed
                await alerts.wait(3)
                assert alerts.times[2] - alerts.times[1] >= 0.6 - 0.01
                assert await ws.wait_connected()
            assert alerts.args == [(R.NETWORK_ERROR, 1), (R.NETWORK_ERROR, 2), (R.NETWORK_ERROR, 1)]
            assert ws.stats.disconnects == 4


async def test_an_alert_held_while_no_connection_opens_is_reported_on_time() -> None:
    """Between connections no session's task reports held alerts: the supervisor's waits do."""
    alerts = Recorder()
    async with (
        open_test_server() as server,
        manager(
            server,
            on_disconnect_alert=alerts,
            disconnect_alert_interval=0.3,
            stable_connection_time=0,
            max_reconnect_attempts=None,
        ) as ws,
    ):
        with anyio.fail_after(WAIT):
            await server.drop_clients()
            await alerts.wait(1)
            await server.wait_for_handshakes(2)
            server.refuse_handshakes(503, count=None)  # from now on, every dial fails
            await server.drop_clients()  # inside the interval: held
            await alerts.wait(2)  # reported when the interval ends, while no dial succeeds
            assert not ws.is_connected
            assert alerts.times[1] - alerts.times[0] >= 0.3 - 0.01
        assert alerts.args == [(R.NETWORK_ERROR, 1), (R.NETWORK_ERROR, 1)]


# -- callbacks that raise -------------------------------------------------------------------------


def boom(*args: Any) -> None:
    raise RuntimeError("callback bug")


@pytest.mark.parametrize("kind", KINDS)
async def test_on_connect_that_raises_leaves_the_connection_up(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """B9: the old connect() re-raised and reported DISCONNECTED with the socket open."""
    async with open_test_server() as server:
        ws = manager(server, on_connect=as_kind(kind, boom))
        await ws.subscribe("trades")
        async with ws:
            assert ws.state is S.CONNECTED
            with anyio.fail_after(WAIT):
                await server.wait_for_messages(1)  # the replay still follows on_connect
                await ws.send("still works")
                assert await ws.receive() == {"type": "subscribe", "channel": "trades"}
                assert await ws.receive() == "still works"
            assert ws.stats.callback_errors == 1
            assert server.live_clients == server.clients
            assert server.clients[0].messages == [
                '{"type":"subscribe","channel":"trades"}',
                "still works",
            ]
        assert any("on_connect callback raised" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kind", KINDS)
async def test_disconnect_callbacks_that_raise_do_not_stop_the_reconnect(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """B9: a raising on_disconnect left the old manager stuck in RECONNECTING."""
    async with (
        open_test_server() as server,
        manager(
            server,
            on_disconnect=as_kind(kind, boom),
            on_disconnect_alert=as_kind(kind, boom),
            disconnect_alert_interval=0.001,
        ) as ws,
    ):
        for n in (2, 3):
            with anyio.fail_after(WAIT):
                await server.drop_clients()
                await server.wait_for_handshakes(n)
                assert await ws.wait_connected()
            assert ws.state is S.CONNECTED
            assert not ws.is_dead
        assert ws.stats.callback_errors == 4  # both callbacks, both times
        assert ws.stats.disconnects == 2
        assert len(server.live_clients) == 1
        messages = [r.getMessage() for r in caplog.records]
        assert any("on_disconnect callback raised" in m for m in messages)
        assert any("on_disconnect_alert callback raised" in m for m in messages)


async def test_a_should_disconnect_that_raises_is_a_no() -> None:
    checks = Recorder(lambda n: boom())
    async with (
        open_test_server() as server,
        manager(server, should_disconnect=checks, disconnect_check_interval=0.02) as ws,
    ):
        with anyio.fail_after(WAIT):
            await checks.wait(3)
        assert ws.is_connected
        assert ws.stats.callback_errors >= 3
        assert len(server.clients) == 1


# -- options through the manager ------------------------------------------------------------------

URL = "ws://127.0.0.1:9/ws"

# These are async only because a ManagedWebSocket can only be built inside a running event loop
# (its stats clock and events are anyio's); nothing is dialled.


async def test_defaults() -> None:
    assert ManagedWebSocket(URL)._settings == Settings()


@pytest.mark.parametrize(
    ("section", "name", "expected"),
    [
        ({"ping": {"interval": 1000}}, "ping_interval", 60.0),  # clamped to the bound
        ({"ping": {"interval": 1}}, "ping_interval", 5.0),
        ({"ping": {"interval": 30}}, "ping_interval", 30.0),
        ({"ping": {"interval": "abc"}}, "ping_interval", 20.0),  # bad type: the default
        ({"ping": {"interval": True}}, "ping_interval", 20.0),
        ({"ping": {"interval": math.nan}}, "ping_interval", 20.0),
        ({"ping": "not a mapping"}, "ping_interval", 20.0),
        ({"queue": {"size": 20000}}, "queue_size", 10000),
        ({"queue": {"size": "7"}}, "queue_size", 7),
        ({"reconnect": {"max_attempts": -3}}, "max_reconnect_attempts", 0),
        ({"reconnect": {"delay": 0.001}}, "reconnect_delay", 0.001),
        ({"proactive": {"reconnect_check_interval": 0}}, "reconnect_check_interval", 0.5),
        ({"alert": {"disconnect_interval": 1}}, "disconnect_alert_interval", 30.0),
    ],
)
async def test_config_values_are_clamped_and_bad_ones_fall_back(
    section: dict[str, Any], name: str, expected: object
) -> None:
    settings = ManagedWebSocket(URL, config={"websocket": section})._settings
    value = getattr(settings, name)
    assert value == expected
    assert type(value) is type(expected)


async def test_keywords_win_over_config_and_are_not_clamped() -> None:
    config = {"websocket": {"ping": {"interval": 30, "timeout": 7}, "queue": {"size": 50}}}
    settings = ManagedWebSocket(URL, config=config, ping_interval=0.5, queue_size=3)._settings
    assert (settings.ping_interval, settings.ping_timeout, settings.queue_size) == (0.5, 7.0, 3)
    assert ManagedWebSocket(URL, config=config, ping_interval=None)._settings.ping_interval is None
    assert ManagedWebSocket(URL, config={"other": 1})._settings == Settings()


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"ping_interval": -1}, ValueError),
        ({"ping_timeout": 0}, ValueError),
        ({"reconnect_delay": math.nan}, ValueError),
        ({"reconnect_jitter": 1.5}, ValueError),
        ({"ping_interval": "20"}, TypeError),
        ({"queue_size": 1.5}, TypeError),
        ({"queue_size": -1}, ValueError),
        ({"auto_reconnect": 1}, TypeError),
        ({"overflow": "drop_everything"}, ValueError),
        ({"on_message": "print"}, TypeError),
        ({"pingInterval": 5}, TypeError),  # unknown option
        ({"config": "websocket.yaml"}, TypeError),
    ],
)
async def test_invalid_keywords_raise_at_construction(
    options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        ManagedWebSocket(URL, **options)


async def test_invalid_url_raises_at_construction() -> None:
    with pytest.raises(WebSocketInvalidURLError):
        ManagedWebSocket("http://127.0.0.1/ws")


async def test_config_reaches_the_running_manager() -> None:
    arrived = Recorder()
    config = {"websocket": {"queue": {"size": 3}}}
    async with (
        open_test_server() as server,
        manager(server, config=config, overflow="drop_newest", on_message=arrived) as ws,
    ):
        with anyio.fail_after(WAIT):
            for i in range(5):
                await server.broadcast(f"m{i}")
            await arrived.wait(5)
            await anyio.sleep(0.02)
            assert [await ws.receive() for _ in range(3)] == ["m0", "m1", "m2"]
        assert ws.stats.messages_dropped == 2


# -- secrets --------------------------------------------------------------------------------

KEY = "AbCdEf0123456789AbCdEf0123456789"
SECRETS = ("hunter2", "s3cret", KEY)


async def test_secrets_never_reach_logs_reprs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    """The replaced system put the URL, credentials included, into exception messages."""
    texts: list[str] = []
    async with open_test_server() as server:
        url = f"ws://user:hunter2@127.0.0.1:{server.port}/ws/{KEY}?token=s3cret"
        server.refuse_handshakes(503, count=1)  # the first dial fails and is logged
        ws = ManagedWebSocket(url, **FAST)
        texts += [repr(ws), str(ws.url), ws.url]
        with anyio.fail_after(WAIT):
            async with ws:
                texts.append(repr(ws))
                await ws.send("x")
                assert await ws.receive() == "x"
                await server.drop_clients()
                await server.wait_for_handshakes(2)
                assert await ws.wait_connected()
                texts += [repr(ws.last_disconnect), repr(ws.stats)]
        assert server.clients[-1].path == f"/ws/{KEY}?token=s3cret"  # the real URL was used
        texts.append(repr(ws))

        errors: list[BaseException] = []
        server.refuse_handshakes(403, body=b"forbidden")  # fatal at once
        with anyio.fail_after(WAIT), pytest.raises(WebSocketHandshakeError) as refused:
            async with ManagedWebSocket(url, **FAST):
                pass
        errors.append(refused.value)
        server.refuse_handshakes(503, count=None)  # retried, then given up
        with anyio.fail_after(WAIT), pytest.raises(WebSocketReconnectError) as gave_up:
            async with ManagedWebSocket(url, **{**FAST, "max_reconnect_attempts": 1}):
                pass
        errors.append(gave_up.value)
        assert isinstance(gave_up.value.last_error, WebSocketHandshakeError)

    for error in errors:
        assert isinstance(error, WebSocketError)
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
        texts += [str(getattr(error, "url", "")), repr(getattr(error, "last_error", None))]
    texts += [record.getMessage() for record in caplog.records]
    texts.append(caplog.text)
    assert any("127.0.0.1" in text for text in texts)  # URLs are shown, masked
    assert any(record.levelno == logging.DEBUG for record in caplog.records)
    for secret in SECRETS:
        leaks = [text for text in texts if secret in text]
        assert not leaks, (secret, leaks[:3])
