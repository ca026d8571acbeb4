"""Reconnection against the real test server, on asyncio and trio (SPEC section 5).

Every kind of connection end is noticed, classified and followed by a reconnect that runs
``on_connect`` and then replays the subscriptions in order; reconnect exhaustion and fatal
refusals reach both the owner and the consumers as plain exceptions; there is never more than one
live connection. Backoff *timing* is in ``test_backoff_timing.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from managed_websocket import (
    ConnectionState,
    DisconnectReason,
    ManagedWebSocket,
    ReconnectStrategy,
    WebSocketHandshakeError,
    WebSocketReconnectError,
    open_managed_websocket,
)
from managed_websocket.testing import ClientRecord, WebSocketTestServer, open_test_server

from ._reconnect_support import DisconnectLog, accept_log, decoded, run_until_it_fails, sub

pytestmark = pytest.mark.anyio

#: Upper bound for every test here; each normally takes well under a second.
WAIT = 10

#: Small, exact reconnect delays so the tests are quick and the order of events is fixed.
FAST: dict[str, Any] = {
    "reconnect_delay": 0.02,
    "max_reconnect_delay": 0.05,
    "reconnect_jitter": 0,
    "connection_timeout": 5,
}

# -- Every kind of disconnect, then reconnect + on_connect + ordered resubscribe ---------------


@dataclass(frozen=True)
class Fault:
    inject: Callable[[WebSocketTestServer], Awaitable[object]]
    reason: DisconnectReason
    code: int | None
    ended_by: str | None  # how the server recorded the first connection's end
    close_reason: str = ""
    options: tuple[tuple[str, Any], ...] = ()


async def _silence(server: WebSocketTestServer) -> None:
    server.silence_clients()


async def _malformed_frame(server: WebSocketTestServer) -> None:
    # A text frame with the reserved bits set and no extension negotiated: RFC 6455 5.2 says fail.
    await server.send_raw(bytes([0xF1, 0x00]))


def _close(code: int, reason: str = "") -> Callable[[WebSocketTestServer], Awaitable[None]]:
    async def inject(server: WebSocketTestServer) -> None:
        await server.close_clients(code, reason)

    return inject


_CLOSED = DisconnectReason.SERVER_CLOSED
_NETWORK = DisconnectReason.NETWORK_ERROR
FAULTS = {
    "close-1000": Fault(_close(1000), _CLOSED, 1000, "server_close"),
    "close-1001": Fault(_close(1001), _CLOSED, 1001, "server_close"),
    "close-1011": Fault(_close(1011), _CLOSED, 1011, "server_close"),
    "close-4000-bye": Fault(_close(4000, "bye"), _CLOSED, 4000, "server_close", "bye"),
    "fin": Fault(WebSocketTestServer.drop_clients, _NETWORK, 1006, "server_drop"),
    "rst": Fault(WebSocketTestServer.reset_clients, _NETWORK, 1006, "server_reset"),
    # A silenced server reads nothing, so it never learns that the client went away.
    "half-open": Fault(
        _silence,
        DisconnectReason.PING_TIMEOUT,
        None,
        None,
        options=(("ping_interval", 0.2), ("ping_timeout", 0.2)),
    ),
    # The client fails the connection with a 1002 close frame, which the server answers.
    "protocol-error": Fault(
        _malformed_frame, DisconnectReason.PROTOCOL_ERROR, 1002, "client_close"
    ),
}


def _handshaken(server: WebSocketTestServer) -> list[ClientRecord]:
    return [c for c in server.clients if c.handshake_completed]


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
async def test_every_disconnect_is_classified_then_reconnects_and_resubscribes_in_order(
    fault: Fault,
) -> None:
    disconnects = DisconnectLog()
    connects = 0

    async def on_connect() -> None:
        nonlocal connects
        connects += 1
        await ws.send({"hello": connects})

    with anyio.fail_after(WAIT):
        async with open_test_server() as server:
            options = {**FAST, "ping_interval": None, **dict(fault.options)}
            ws = open_managed_websocket(
                server.url, on_connect=on_connect, on_disconnect=disconnects, **options
            )
            async with ws:
                await ws.subscribe("c3", "c1")
                await ws.subscribe("c2", "c3")  # c3 again: no duplicate, order kept
                assert ws.subscriptions == ("c3", "c1", "c2")
                first = [{"hello": 1}, sub("c3"), sub("c1"), sub("c2")]
                assert [await ws.receive() for _ in first] == first  # the echoes

                await fault.inject(server)

                await server.wait_for_handshakes(2)
                second = _handshaken(server)[1]
                await server.wait_for_messages(4, second)
                # on_connect first, then every subscription once, in subscription order.
                marker = {"hello": 2}
                expected = [marker, sub("c3"), sub("c1"), sub("c2")]
                assert [await ws.receive() for _ in expected] == expected
                assert decoded(second.messages) == expected

                event = ws.last_disconnect
                assert event is not None
                assert (event.reason, event.code, event.close_reason) == (
                    fault.reason,
                    fault.code,
                    fault.close_reason,
                )
                assert disconnects.reasons == [fault.reason]
                assert connects == 2
                assert ws.is_connected

                # Messages keep flowing on the new connection.
                assert await server.broadcast('{"tick": 1}') == 1
                assert await ws.receive() == {"tick": 1}
                assert decoded(server.clients[0].messages) == first
                assert server.clients[0].ended_by == fault.ended_by
                assert decoded(second.messages) == expected  # nothing more was sent
                assert len(_handshaken(server)) == 2
                assert ws.stats.connects == 2


# -- Exhaustion and fatal refusals --------------------------------------------------------------


async def _consume(ws: ManagedWebSocket, errors: list[BaseException]) -> None:
    """Iterate over ``ws`` until it fails; keep the error."""
    try:
        async for _ in ws:
            pass
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        errors.append(exc)


async def _receive(ws: ManagedWebSocket, errors: list[BaseException]) -> None:
    """Call ``ws.receive()`` until it fails; keep the error."""
    try:
        while True:
            await ws.receive()
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        errors.append(exc)


async def test_exhaustion_reaches_the_consumer_and_the_owner_as_plain_exceptions() -> None:
    """After the drop: attempts 1, 2 and 3 are refused, attempt 4 is never dialled.

    So the server sees 4 connections in all: the first (good) one and 3 refused reconnects, and
    ``attempts`` is 3, the number of reconnect dials made."""
    consumer_errors: list[BaseException] = []
    with anyio.fail_after(WAIT):
        async with open_test_server() as server, anyio.create_task_group() as tg:
            ws = ManagedWebSocket(server.url, **FAST, max_reconnect_attempts=3)
            tg.start_soon(_consume, ws, consumer_errors)
            tg.start_soon(_receive, ws, consumer_errors)

            async def refuse_after_a_drop() -> None:
                server.refuse_handshakes(503, body=b"busy", count=None)
                await server.drop_clients()

            with pytest.raises(WebSocketReconnectError) as raised:
                await run_until_it_fails(ws, refuse_after_a_drop)
    exc = raised.value
    assert type(exc) is WebSocketReconnectError  # not an ExceptionGroup
    assert exc.attempts == 3
    assert isinstance(exc.last_error, WebSocketHandshakeError)
    assert exc.last_error.status_code == 503
    assert consumer_errors == [exc, exc]  # the async-for consumer and the receive() one
    assert [c.ended_by for c in server.clients] == ["server_drop"] + ["refused"] * 3
    assert ws.stats.reconnect_attempts == 3
    assert ws.is_shutdown


async def test_embedded_run_raises_when_the_first_connection_cannot_be_made() -> None:
    """The first dial plus 2 retries: 3 refused connections, ``attempts`` == 2 (the retries)."""
    with anyio.fail_after(WAIT):
        async with open_test_server() as server:
            server.refuse_handshakes(503, count=None)
            ws = ManagedWebSocket(server.url, **FAST, max_reconnect_attempts=2)
            async with anyio.create_task_group() as tg:
                with pytest.raises(WebSocketReconnectError) as raised:
                    await tg.start(ws.run)
    exc = raised.value
    assert type(exc) is WebSocketReconnectError
    assert exc.attempts == 2
    assert isinstance(exc.last_error, WebSocketHandshakeError)
    assert exc.last_error.status_code == 503
    assert [c.ended_by for c in server.clients] == ["refused"] * 3
    assert ws.is_shutdown


async def test_unlimited_attempts_keep_trying_until_the_server_accepts() -> None:
    with anyio.fail_after(WAIT):
        async with open_test_server() as server:
            server.refuse_handshakes(503, count=25)
            async with open_managed_websocket(
                server.url,
                reconnect_delay=0.001,
                max_reconnect_delay=0.002,
                reconnect_jitter=0,
                max_reconnect_attempts=None,
            ) as ws:
                assert ws.is_connected
                assert ws.stats.reconnect_attempts == 25
                assert [c.ended_by for c in server.clients] == ["refused"] * 25 + [None]
                await ws.send("still here")
                assert await ws.receive() == "still here"


async def test_a_403_on_the_first_connection_is_raised_at_once_without_retrying() -> None:
    with anyio.fail_after(WAIT):
        async with open_test_server() as server:
            server.refuse_handshakes(403, body=b"go away", count=None)
            started = anyio.current_time()
            with pytest.raises(WebSocketHandshakeError) as raised:
                # A retry would wait reconnect_delay (5 s) first.
                async with open_managed_websocket(
                    server.url, reconnect_delay=5, max_reconnect_attempts=10
                ):
                    pytest.fail("connected despite the 403")
            elapsed = anyio.current_time() - started
    assert type(raised.value) is WebSocketHandshakeError
    assert raised.value.status_code == 403
    assert raised.value.body == b"go away"
    assert len(server.clients) == 1
    assert elapsed < 2


async def test_a_403_while_reconnecting_fails_the_manager_without_retrying() -> None:
    consumer_errors: list[BaseException] = []
    with anyio.fail_after(WAIT):
        async with open_test_server() as server, anyio.create_task_group() as tg:
            ws = ManagedWebSocket(server.url, **FAST, max_reconnect_attempts=10)
            tg.start_soon(_consume, ws, consumer_errors)

            async def forbid_after_a_reset() -> None:
                server.refuse_handshakes(403, count=None)
                await server.reset_clients()

            with pytest.raises(WebSocketHandshakeError) as raised:
                await run_until_it_fails(ws, forbid_after_a_reset)
    assert type(raised.value) is WebSocketHandshakeError
    assert raised.value.status_code == 403
    assert consumer_errors == [raised.value]
    assert [c.ended_by for c in server.clients] == ["server_reset", "refused"]


# -- One connection at a time -------------------------------------------------------------------


async def test_never_two_live_connections_during_a_reconnect_storm() -> None:
    """Flaps (with and without a close frame), refusals, and every live-connection fault, in a
    row: at every handshake the server has exactly one open connection, the new one."""
    live_at_handshake: list[int] = []
    earlier_open_at_handshake: list[list[int]] = []

    def check(record: ClientRecord) -> None:
        live_at_handshake.append(len(server.live_clients))
        earlier_open_at_handshake.append(
            [c.index for c in server.clients[: record.index] if not c.closed]
        )

    with anyio.fail_after(WAIT):
        async with open_test_server() as server, accept_log(server) as log:
            server.on_handshake(check)
            async with open_managed_websocket(
                server.url,
                reconnect_strategy=ReconnectStrategy.FIXED_DELAY,
                reconnect_delay=0.01,
                reconnect_jitter=0,
                max_reconnect_attempts=None,
                server_unavailable_delay=0.01,  # after the 1013 close
            ) as ws:
                faults: list[Callable[[], Awaitable[object]]] = [
                    server.drop_clients,
                    server.reset_clients,
                    lambda: server.close_clients(1001),
                    lambda: server.close_clients(1013),
                    server.drop_clients,
                ]
                handshakes = 1
                for inject in faults:
                    server.flap(count=2, code=1000)
                    server.flap(count=1, code=None)
                    server.refuse_handshakes(503, count=1)
                    await inject()
                    handshakes += 4  # 3 flaps, then a served one
                    await server.wait_for_handshakes(handshakes)
                    await ws.wait_connected()
                assert ws.is_connected
                assert len(server.live_clients) == 1
    served = len(faults) + 1
    assert len(server.clients) == served + len(faults) * 4
    assert live_at_handshake == [1] * served
    assert earlier_open_at_handshake == [[]] * served
    assert log.max_live == 1  # checked at every accept, refused and flapped ones included


# -- Stopping while a reconnect dial completes --------------------------------------------------


@pytest.mark.parametrize("stop", ["shutdown", "close"])
async def test_stopping_as_a_reconnect_handshake_completes_discards_the_new_connection(
    stop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another task calls ``shutdown()``/``close()`` in the very step in which the reconnect
    handshake completes, so the dial returns its connection with the cancellation still pending
    (made deterministic here: the end of the dial is shielded while the other task runs).

    The new socket is closed at once and the manager ends up CLOSED / DISCONNECTED; it does not
    go CONNECTED (``shutdown`` used to raise IllegalTransition CLOSING -> CONNECTED; ``close``
    used to wait forever while the connection stayed up)."""
    stop_started = anyio.Event()
    with anyio.fail_after(WAIT):
        async with open_test_server() as server:
            ws = ManagedWebSocket(server.url, **FAST)
            real_open = ws._open
            async with ws:
                async with anyio.create_task_group() as tg:

                    async def open_then_race_a_stop() -> Any:
                        conn = await real_open()
                        with anyio.CancelScope(shield=True):
                            tg.start_soon(getattr(ws, stop))
                            await anyio.sleep(0.05)  # the stop call runs to its first wait
                        stop_started.set()
                        return conn  # no checkpoint between here and the supervisor

                    monkeypatch.setattr(ws, "_open", open_then_race_a_stop)
                    await server.drop_clients()
                    await stop_started.wait()
                # The stop call has returned.
                assert ws.state is (
                    ConnectionState.CLOSED if stop == "shutdown" else ConnectionState.DISCONNECTED
                )
                with anyio.fail_after(2):
                    await server.clients[1].wait_closed()
                assert server.clients[1].close_code is None  # aborted, not served
                assert ws.stats.connects == 1
                assert len(server.clients) == 2
