"""The fault matrix: every fault the manager must survive (or fail on, with the documented error).

One parametrised test, one case per fault, each on asyncio and trio. For each fault the manager
either **recovers** — reconnects, resubscribes, and a sequenced tick broadcast after the recovery
reaches the consumer — or **fails** with the documented typed error. Either way within a stated time
bound (asserted), with every socket closed on the server side once the manager has exited, no task
of the library left running, and no hang (``anyio.fail_after`` around each case).

Each case that passes records its outcome and the measured time (fault injected → tick received, or
→ error raised) in the session's :class:`FaultMatrix`; at the end of the module, if every case ran on
every backend, ``docs/fault-matrix.md`` is written from those rows. Never edit that file by hand.

Servers: the package's scripted test server (``open_test_server``), with the TCP fault proxy
(``open_fault_proxy``) in front of it where the fault is below WebSocket; and, for the last cases,
the proxy in front of an independent server — ``websockets`` on asyncio, ``trio-websocket`` on
trio.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme

from managed_websocket import (
    DisconnectReason,
    ManagedWebSocket,
    WebSocketClosedError,
    WebSocketConnectionRefusedError,
    WebSocketDNSError,
    WebSocketHandshakeError,
    WebSocketMessageTooBigError,
    WebSocketProtocolError,
    WebSocketReconnectError,
    WebSocketTLSError,
    open_managed_websocket,
)
from managed_websocket.testing import (
    open_fault_proxy,
    open_test_server,
)

from ._support import (
    EPS,
    FAST,
    RECEIVE_TIMEOUT,
    Feed,
    Run,
    ScriptedFeed,
    assert_no_leaks,
    expect_tick,
    library_tasks,
    managed_feed,
    now,
    run_until_it_fails,
    wait_until,
)
from .conftest import FaultMatrix

pytestmark = pytest.mark.anyio

BACKENDS = ("asyncio", "trio")
DOC = Path(__file__).resolve().parents[2] / "docs" / "fault-matrix.md"

#: Added to each case's bound for the hang guard (``fail_after``) around the whole case.
HANG_MARGIN = 20.0

_NETWORK = DisconnectReason.NETWORK_ERROR
_CLOSED = DisconnectReason.SERVER_CLOSED
_PING = DisconnectReason.PING_TIMEOUT
_PROTOCOL = DisconnectReason.PROTOCOL_ERROR


async def free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- The cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    outcome: str
    seconds: float | None  # fault → recovered (or → the error raised); None: nothing to time
    note: str = ""


Scenario = Callable[[str], Awaitable[Result]]


@dataclass(frozen=True)
class Case:
    id: str
    fault: str  # how it is injected, for the document
    expected: str  # the documented behaviour
    bound: float  # asserted on Result.seconds
    run: Scenario
    marks: tuple[Any, ...] = ()


async def _live_fault(
    backend: str,
    inject: Callable[[Run], Awaitable[object]],
    reason: DisconnectReason,
    code: int | None,
    *,
    via_proxy: bool = False,
    peer: bool = False,
    **options: Any,
) -> tuple[Run, float]:
    """Break the live connection with ``inject``; wait for the recovery; check the reason."""
    async with managed_feed(backend, via_proxy=via_proxy, peer=peer, **options) as run:
        before = run.feed.connections
        started = now()
        await inject(run)
        await run.recover(before)
        elapsed = now() - started
        assert run.reasons == [reason]
        last = run.manager.last_disconnect
        assert last is not None
        assert last.reason is reason
        if code is not None:
            assert last.code == code
    return run, elapsed


def _recovered(reason: DisconnectReason, code: int | None = None) -> str:
    detail = f" {code}" if code is not None else ""
    return f"recovered ({reason.name}{detail} → reconnect, resubscribe, tick)"


async def case_fin(backend: str) -> Result:
    _, elapsed = await _live_fault(backend, lambda run: run.server.drop_clients(), _NETWORK, 1006)
    return Result(_recovered(_NETWORK, 1006), elapsed)


async def case_rst(backend: str) -> Result:
    _, elapsed = await _live_fault(backend, lambda run: run.server.reset_clients(), _NETWORK, 1006)
    return Result(_recovered(_NETWORK, 1006), elapsed)


async def _blackhole_until_ping_timeout(run: Run) -> None:
    assert run.proxy is not None
    run.proxy.blackhole()
    await run.disconnected.wait()
    run.proxy.restore()  # the partition heals: the reconnect can get through


async def case_blackhole(backend: str) -> Result:
    run, elapsed = await _live_fault(
        backend,
        _blackhole_until_ping_timeout,
        _PING,
        None,
        via_proxy=True,
        ping_interval=0.2,
        ping_timeout=0.2,
    )
    detected = run.disconnects[0][0] - run.connect_times[0]
    return Result(_recovered(_PING), elapsed, note=f"dead link noticed in {detected:.2f} s")


async def case_close_1013(backend: str) -> Result:
    delay = 0.5

    async def inject(run: Run) -> None:
        await run.server.close_clients(1013, "try later")

    run, elapsed = await _live_fault(backend, inject, _CLOSED, 1013, server_unavailable_delay=delay)
    waited = run.connect_times[1] - run.disconnects[0][0]
    assert waited >= delay - EPS, f"server_unavailable_delay not honoured: {waited:.3f} s"
    return Result(_recovered(_CLOSED, 1013), elapsed, note=f"waited {waited:.2f} s ≥ {delay} s")


async def case_flap(backend: str) -> Result:
    flaps = 3

    async def inject(run: Run) -> None:
        run.server.flap(count=flaps, code=1000)  # accepted, then closed at once, three times
        await run.server.drop_clients()

    run, elapsed = await _flap_until_recovered(backend, inject, flaps)
    # Not hammered: each reconnect waited for its backoff delay, and the delays grew.
    gaps = [run.connect_times[i + 1] - run.disconnects[i][0] for i in range(flaps + 1)]
    nominal = [min(0.02 * 2**n, 0.05) for n in range(flaps + 1)]
    assert all(gap >= d - EPS for gap, d in zip(gaps, nominal, strict=True)), (gaps, nominal)
    return Result(
        f"recovered after {flaps} flaps (backoff {', '.join(f'{g:.2f}' for g in gaps)} s)",
        elapsed,
    )


async def _flap_until_recovered(
    backend: str, inject: Callable[[Run], Awaitable[object]], flaps: int
) -> tuple[Run, float]:
    async with managed_feed(backend) as run:
        before = run.feed.connections
        started = now()
        await inject(run)
        await run.recover(before + flaps)
        elapsed = now() - started
        assert run.reasons == [_NETWORK] + [_CLOSED] * flaps
        assert [c.ended_by for c in run.server.clients[: before + flaps]] == ["server_drop"] + [
            "server_close"
        ] * flaps
    return run, elapsed


def _retry_after_case(status: int) -> Scenario:
    async def scenario(backend: str) -> Result:
        retry_after = 1.0

        async def inject(run: Run) -> None:
            run.server.refuse_handshakes(status, [("Retry-After", "1")], body=b"busy")
            await run.server.drop_clients()

        run, elapsed = await _live_fault(backend, inject, _NETWORK, 1006)
        ended_by = [c.ended_by for c in run.server.clients]
        assert ended_by == ["server_drop", "refused", "client_close"]  # the last one: at exit
        waited = run.connect_times[1] - run.disconnects[0][0]
        # The first reconnect (after 0.02 s) is refused; the next waits for Retry-After.
        assert waited >= 0.02 + retry_after - EPS, f"Retry-After not honoured: {waited:.3f} s"
        return Result(
            f"recovered; HTTP {status} Retry-After: 1 honoured",
            elapsed,
            note=f"refused, then waited {waited - 0.02:.2f} s",
        )

    return scenario


async def case_forbidden(backend: str) -> Result:
    started: list[float] = []
    async with open_test_server(echo=False) as server:
        ws = ManagedWebSocket(server.url + "/ws", **FAST)

        async def forbid() -> None:
            server.refuse_handshakes(403, body=b"forbidden", count=None)
            started.append(now())
            await server.drop_clients()

        with pytest.raises(WebSocketHandshakeError) as raised:
            await run_until_it_fails(ws, forbid)
        elapsed = now() - started[0]
        assert type(raised.value) is WebSocketHandshakeError
        assert raised.value.status_code == 403
        assert [c.ended_by for c in server.clients] == ["server_drop", "refused"]  # no retry
        assert ws.is_shutdown
        await assert_no_leaks(ScriptedFeed(server), backend)
    return Result("fails: WebSocketHandshakeError(403) from `async with`, no retry", elapsed)


async def case_refused_closed_port(backend: str) -> Result:
    port = await free_port()
    started = now()
    with pytest.raises(WebSocketReconnectError) as raised:
        async with open_managed_websocket(
            f"ws://127.0.0.1:{port}/ws", **{**FAST, "max_reconnect_attempts": 3}
        ):
            pytest.fail("connected to a closed port")
    elapsed = now() - started
    assert raised.value.attempts == 3
    assert isinstance(raised.value.last_error, WebSocketConnectionRefusedError)
    assert library_tasks(backend) == []
    return Result(
        "fails: WebSocketReconnectError(attempts=3, last_error=WebSocketConnectionRefusedError)",
        elapsed,
    )


async def case_refused_mid_session(backend: str) -> Result:
    started: list[float] = []
    async with (
        open_test_server(echo=False) as server,
        open_fault_proxy("127.0.0.1", server.port) as proxy,
    ):
        ws = ManagedWebSocket(proxy.url_for("/ws"), **{**FAST, "max_reconnect_attempts": 3})

        async def refuse() -> None:
            await proxy.refuse_new(True, stop_listening=True)  # the port now refuses
            started.append(now())
            await proxy.cut()

        with pytest.raises(WebSocketReconnectError) as raised:
            await run_until_it_fails(ws, refuse)
        elapsed = now() - started[0]
        assert raised.value.attempts == 3
        assert isinstance(raised.value.last_error, WebSocketConnectionRefusedError)
        assert ws.stats.reconnect_attempts == 3
        await assert_no_leaks(ScriptedFeed(server), backend)
    return Result(
        "fails: WebSocketReconnectError(attempts=3, last_error=WebSocketConnectionRefusedError)",
        elapsed,
    )


async def case_refused_then_back(backend: str) -> Result:
    async def inject(run: Run) -> None:
        assert run.proxy is not None
        await run.proxy.refuse_new(True, stop_listening=True)
        await run.proxy.cut()
        await wait_until(lambda: run.manager.stats.reconnect_attempts >= 3)
        await run.proxy.refuse_new(False)  # the server is back before exhaustion

    run, elapsed = await _live_fault(
        backend, inject, _NETWORK, None, via_proxy=True, max_reconnect_attempts=50
    )
    attempts = run.manager.stats.reconnect_attempts
    assert 3 <= attempts < 50
    return Result(f"recovered after {attempts - 1} refused reconnects", elapsed)


async def case_dns(backend: str) -> Result:
    started = now()
    with pytest.raises(WebSocketReconnectError) as raised:
        async with open_managed_websocket(
            "ws://nonexistent.invalid/ws", **{**FAST, "max_reconnect_attempts": 2}
        ):
            pytest.fail("connected to a name that does not resolve")
    elapsed = now() - started
    assert raised.value.attempts == 2
    assert isinstance(raised.value.last_error, WebSocketDNSError)
    assert library_tasks(backend) == []
    return Result(
        "fails: WebSocketReconnectError(attempts=2, last_error=WebSocketDNSError)", elapsed
    )


async def case_tls(backend: str) -> Result:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    trustme.CA().configure_trust(client_context)  # another CA: verification must fail
    async with open_test_server(echo=False, ssl_context=server_context) as server:
        started = now()
        with pytest.raises(WebSocketTLSError) as raised:
            # A retry would first wait reconnect_delay: 5 s.
            async with open_managed_websocket(
                server.url + "/ws",
                **{**FAST, "ssl_context": client_context, "reconnect_delay": 5},
            ):
                pytest.fail("connected despite the certificate")
        elapsed = now() - started
        assert isinstance(raised.value.last_error, ssl.SSLCertVerificationError)
        assert len(server.clients) == 1  # fatal: not retried
        await assert_no_leaks(ScriptedFeed(server), backend)
    return Result("fails at once: WebSocketTLSError (certificate verify failed), no retry", elapsed)


async def case_oversized(backend: str) -> Result:
    limit = 1024

    async def inject(run: Run) -> None:
        await run.feed.broadcast("x" * (4 * limit))

    run, elapsed = await _live_fault(backend, inject, _PROTOCOL, 1009, max_message_size=limit)
    last = run.disconnect_events[0]  # last_disconnect now holds the shutdown at exit
    assert last is not None
    assert isinstance(last.error, WebSocketMessageTooBigError)
    assert run.server.clients[0].close_code == 1009  # we told the server why
    return Result(_recovered(_PROTOCOL, 1009), elapsed)


async def case_malformed(backend: str) -> Result:
    async def inject(run: Run) -> None:
        # A text frame with RSV1 set and no extension negotiated: RFC 6455 5.2 says fail.
        await run.server.send_raw(bytes([0xC1, 0x00]))

    run, elapsed = await _live_fault(backend, inject, _PROTOCOL, 1002)
    last = run.disconnect_events[0]  # last_disconnect now holds the shutdown at exit
    assert last is not None
    assert isinstance(last.error, WebSocketProtocolError)
    assert run.server.clients[0].close_code == 1002
    return Result(_recovered(_PROTOCOL, 1002), elapsed)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def case_callback_raises(backend: str) -> Result:
    def on_message(message: Any) -> None:
        raise ValueError(f"bad callback for {message!r}")

    capture = _Capture()
    logger = logging.getLogger("managed_websocket")
    logger.addHandler(capture)
    try:
        async with managed_feed(backend, on_message=on_message) as run:
            started = now()
            for _ in range(5):
                seq = await run.feed.tick()
                await expect_tick(run.manager, seq)  # delivered all the same
            elapsed = now() - started
            stats = run.manager.stats
            assert stats.callback_errors == 6  # the first tick (from the setup) and these five
            assert run.manager.is_connected
            assert run.reasons == []
            assert stats.disconnects == 0
            assert len(run.server.clients) == 1
    finally:
        logger.removeHandler(capture)
    assert sum("on_message" in r.getMessage() for r in capture.records) == 6
    assert all(r.exc_info is not None for r in capture.records)  # with the traceback
    return Result(
        "survives: errors logged and counted, messages delivered, no disconnect",
        None,
        note=f"5 ticks delivered in {elapsed * 1000:.1f} ms",
    )


async def case_slow_consumer_block(backend: str) -> Result:
    """The consumer stops reading: the manager stops reading too, so TCP backpressure reaches
    the server (its write blocks); nothing is lost once the consumer resumes, and the keepalive
    does not mistake the full queue for a dead link."""
    size = 64 * 1024
    total = 400  # 25 MiB: far more than the socket buffers, the queue and the proxy can hold
    sent = 0

    async def produce(feed: Feed) -> None:
        nonlocal sent
        for seq in range(total):
            payload = json.dumps({"type": "bulk", "seq": seq, "pad": "x" * size})
            assert await feed.broadcast(payload) == 1
            sent = seq + 1

    async with (
        managed_feed(
            backend, queue_size=10, overflow="block", ping_interval=0.2, ping_timeout=0.2
        ) as run,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(produce, run.feed)
        # Wait until the server's writes stall: no progress for a second.
        last, stalled_since = -1, now()
        while now() - stalled_since < 1.0:
            await anyio.sleep(0.05)
            if sent != last:
                last, stalled_since = sent, now()
        assert sent < total, "the server was never blocked"
        blocked_at = sent
        started = now()
        for seq in range(total):  # resume: every message, in order
            message = await run.manager.receive(timeout=RECEIVE_TIMEOUT)
            assert message["seq"] == seq
        elapsed = now() - started
        assert run.manager.stats.messages_dropped == 0
        assert run.reasons == []  # no false PING_TIMEOUT while the queue was full
        assert len(run.server.clients) == 1
    return Result(
        "backpressure: server write blocked, nothing lost, no false ping timeout",
        None,
        note=f"server blocked after {blocked_at}/{total} × 64 KiB; drained in {elapsed:.2f} s",
    )


def _dropping_case(policy: str) -> Scenario:
    async def scenario(backend: str) -> Result:
        queue_size, total = 10, 200
        async with managed_feed(backend, queue_size=queue_size, overflow=policy) as run:
            ws = run.manager
            base = ws.stats.messages_received
            for seq in range(total):
                await run.feed.broadcast(json.dumps({"type": "bulk", "seq": seq}))
            with anyio.fail_after(RECEIVE_TIMEOUT):
                await wait_until(lambda: ws.stats.messages_received - base == total)
            received: list[int] = []
            while True:  # take what is queued, until nothing more comes
                with anyio.move_on_after(0.2):
                    received.append((await ws.receive())["seq"])
                    continue
                break
            assert ws.stats.messages_dropped == total - len(received)
            assert len(received) == queue_size
            if policy == "drop_newest":
                assert received == list(range(queue_size))
            else:
                assert received == list(range(total - queue_size, total))
        return Result(
            f"{policy}: messages_dropped == sent − received exactly",
            None,
            note=f"{total} sent, {len(received)} received, {ws.stats.messages_dropped} dropped",
        )

    return scenario


async def case_slow_link(backend: str) -> Result:
    """A slow, far link: 50 ms each way and 128 KiB/s. A 256 KiB message takes two seconds to
    arrive, its bytes hold the pongs back, and they still prove the link alive (SPEC 5)."""
    size = 256 * 1024
    async with managed_feed(backend, via_proxy=True, ping_interval=0.2, ping_timeout=0.3) as run:
        assert run.proxy is not None
        run.proxy.set_latency(0.05)
        run.proxy.set_bandwidth(128 * 1024)
        await anyio.sleep(0.5)  # a few pings on the far link
        started = now()
        await run.feed.broadcast(json.dumps({"type": "bulk", "pad": "x" * size}))
        message = await run.manager.receive(timeout=RECEIVE_TIMEOUT)
        elapsed = now() - started
        assert message["type"] == "bulk"
        assert len(message["pad"]) == size
        assert elapsed >= 1.5  # it really trickled in
        assert run.reasons == []  # no false PING_TIMEOUT
        latency = run.manager.stats.latency
        assert latency is not None
        assert latency >= 0.1 - EPS  # the round trip through the proxy
        run.proxy.set_bandwidth(None)
        run.proxy.set_latency(0)
        await run.recover(0)
    return Result(
        "survives: the trickling message counts as liveness, no false ping timeout",
        None,
        note=f"256 KiB in {elapsed:.2f} s; ping RTT {latency * 1000:.0f} ms",
    )


async def case_handshake_timeout(backend: str) -> Result:
    """The link dies and stays black-holed for the first reconnects: each handshake times out
    (connection_timeout 0.3 s) and is retried; the partition heals; the manager recovers."""
    timeouts = 2

    async def inject(run: Run) -> None:
        assert run.proxy is not None
        run.proxy.blackhole()
        await run.proxy.cut()  # what the client sees of the old connection: FIN
        await wait_until(lambda: run.manager.stats.reconnect_attempts > timeouts)
        run.proxy.restore()

    run, elapsed = await _live_fault(
        backend, inject, _NETWORK, None, via_proxy=True, connection_timeout=0.3
    )
    assert run.proxy is not None
    # The first connection, the dials that timed out, and the one that made it.
    assert run.proxy.counters.connections_accepted >= 1 + timeouts + 1
    return Result(f"recovered after {timeouts} handshake timeouts", elapsed)


async def case_send_into_blackhole(backend: str) -> Result:
    """The consumer keeps sending into a dead link: its send() blocks once the buffers are full
    and must fail (WebSocketClosedError) when the keepalive declares the link dead — no hang."""
    errors: list[BaseException] = []
    sent = 0

    async def sender(ws: ManagedWebSocket) -> None:
        nonlocal sent
        chunk = "y" * 65536
        try:
            while True:
                await ws.send(chunk)
                sent += 1
        except WebSocketClosedError as exc:
            errors.append(exc)

    async def inject(run: Run) -> None:
        assert run.proxy is not None
        run.proxy.blackhole()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sender, run.manager)
            await run.disconnected.wait()
            with anyio.fail_after(2):
                await wait_until(lambda: bool(errors))  # the blocked send() has failed
        run.proxy.restore()

    _, elapsed = await _live_fault(
        backend, inject, _PING, None, via_proxy=True, ping_interval=0.2, ping_timeout=0.2
    )
    assert len(errors) == 1
    return Result(
        "recovered; the send() blocked on the dead link raised WebSocketClosedError",
        elapsed,
        note=f"{sent} × 64 KiB sent before the buffers filled",
    )


def _peer_case(how: str) -> Scenario:
    async def scenario(backend: str) -> Result:
        options: dict[str, Any] = {}
        if how == "blackhole":
            options = {"ping_interval": 0.2, "ping_timeout": 0.2}

        async def inject(run: Run) -> None:
            assert run.proxy is not None
            if how == "blackhole":
                await _blackhole_until_ping_timeout(run)
            else:
                await run.proxy.cut(reset=how == "rst")

        reason = _PING if how == "blackhole" else _NETWORK
        run, elapsed = await _live_fault(backend, inject, reason, None, peer=True, **options)
        return Result(_recovered(reason), elapsed, note=f"server: {run.feed.name}")

    return scenario


CASES = [
    Case("fin", "server closes TCP (FIN), no close frame", "recover", 3.0, case_fin),
    Case("rst", "server resets TCP (RST)", "recover", 3.0, case_rst),
    Case(
        "half-open",
        "proxy black-holes both directions (ping 0.2 s / timeout 0.2 s)",
        "PING_TIMEOUT, then recover",
        4.0,
        case_blackhole,
    ),
    Case(
        "close-1013",
        "server closes with 1013 Try Again Later (server_unavailable_delay 0.5 s)",
        "recover after ≥ server_unavailable_delay",
        4.0,
        case_close_1013,
    ),
    Case("flap", "FIN, then 3 upgrades closed at once (1000)", "recover, backoff", 4.0, case_flap),
    Case(
        "handshake-timeout",
        "proxy black-holes and cuts; reconnect handshakes time out (connection_timeout 0.3 s)"
        " until it heals",
        "retry on timeout, recover",
        5.0,
        case_handshake_timeout,
    ),
    Case(
        "send-into-blackhole",
        "proxy black-holes while the client sends 64 KiB messages (ping 0.2 s / 0.2 s)",
        "blocked send() raises WebSocketClosedError, recover",
        5.0,
        case_send_into_blackhole,
    ),
    Case(
        "http-503",
        "FIN, then the next upgrade refused with 503 + Retry-After: 1",
        "recover after ≥ Retry-After",
        5.0,
        _retry_after_case(503),
    ),
    Case(
        "http-429",
        "FIN, then the next upgrade refused with 429 + Retry-After: 1",
        "recover after ≥ Retry-After",
        5.0,
        _retry_after_case(429),
    ),
    Case(
        "http-403",
        "FIN, then every upgrade refused with 403",
        "WebSocketHandshakeError (fatal, no retry)",
        3.0,
        case_forbidden,
    ),
    Case(
        "refused-closed-port",
        "connect to a closed port (max_reconnect_attempts 3)",
        "WebSocketReconnectError ← WebSocketConnectionRefusedError",
        3.0,
        case_refused_closed_port,
    ),
    Case(
        "refused-mid-session",
        "proxy stops listening and cuts (max_reconnect_attempts 3)",
        "WebSocketReconnectError ← WebSocketConnectionRefusedError",
        3.0,
        case_refused_mid_session,
    ),
    Case(
        "refused-then-back",
        "proxy stops listening and cuts; listens again after 3 refused reconnects",
        "recover",
        4.0,
        case_refused_then_back,
    ),
    Case(
        "dns",
        "ws://nonexistent.invalid/ (max_reconnect_attempts 2)",
        "WebSocketReconnectError ← WebSocketDNSError",
        5.0,
        case_dns,
    ),
    Case(
        "tls-verify",
        "wss:// with a certificate from a CA the client does not trust",
        "WebSocketTLSError at once (fatal)",
        3.0,
        case_tls,
    ),
    Case(
        "oversized",
        "server sends 4 KiB, max_message_size 1 KiB",
        "PROTOCOL_ERROR 1009, recover",
        3.0,
        case_oversized,
    ),
    Case(
        "malformed",
        "server sends a frame with RSV1 set (send_raw)",
        "PROTOCOL_ERROR 1002, recover",
        3.0,
        case_malformed,
    ),
    Case(
        "callback-raises",
        "on_message raises on every message",
        "logged, counted, delivered, stays up",
        math.inf,
        case_callback_raises,
    ),
    Case(
        "slow-consumer-block",
        "consumer stops reading; queue_size 10, overflow block",
        "backpressure to the server, no loss",
        math.inf,
        case_slow_consumer_block,
    ),
    Case(
        "slow-consumer-drop-newest",
        "consumer stops reading; queue_size 10, overflow drop_newest",
        "messages_dropped == sent − received",
        math.inf,
        _dropping_case("drop_newest"),
    ),
    Case(
        "slow-consumer-drop-oldest",
        "consumer stops reading; queue_size 10, overflow drop_oldest",
        "messages_dropped == sent − received",
        math.inf,
        _dropping_case("drop_oldest"),
    ),
    Case(
        "slow-link",
        "proxy adds 50 ms each way and caps 128 KiB/s; a 256 KiB message (ping 0.2 s / 0.3 s)",
        "stays up, message intact",
        math.inf,
        case_slow_link,
    ),
    Case(
        "peer-cut-fin",
        "independent server behind the proxy; proxy cuts (FIN)",
        "recover",
        3.0,
        _peer_case("fin"),
    ),
    Case(
        "peer-cut-rst",
        "independent server behind the proxy; proxy cuts (RST)",
        "recover",
        3.0,
        _peer_case("rst"),
    ),
    Case(
        "peer-blackhole",
        "independent server behind the proxy; proxy black-holes (ping 0.2 s / 0.2 s)",
        "PING_TIMEOUT, then recover",
        4.0,
        _peer_case("blackhole"),
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
async def test_fault(case: Case, anyio_backend: str, fault_matrix: FaultMatrix) -> None:
    hang_guard = (case.bound if math.isfinite(case.bound) else 30.0) + HANG_MARGIN
    with anyio.fail_after(hang_guard):
        result = await case.run(anyio_backend)
    bound = case.bound if math.isfinite(case.bound) else None
    if bound is not None:
        assert result.seconds is not None
        assert result.seconds <= bound, f"{case.id}: {result.seconds:.2f} s > {bound} s"
    fault_matrix.record(case.id, anyio_backend, result.outcome, result.seconds, bound, result.note)


# -- The document ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _write_fault_matrix(fault_matrix: FaultMatrix) -> Iterator[None]:
    yield
    wanted = {(case.id, backend) for case in CASES for backend in BACKENDS}
    # scripts/test-matrix runs the suite on other Pythons: those runs leave the page alone.
    if wanted <= fault_matrix.rows.keys() and not os.environ.get("MW_TEST_MATRIX"):
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(render(fault_matrix), encoding="utf-8")


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} s"


def render(matrix: FaultMatrix) -> str:
    lines = [
        "# Fault matrix",
        "",
        "<!-- Generated by tests/reliability/test_fault_matrix.py; do not edit by hand. -->",
        "",
        "Every fault below was injected while a managed connection consumed a sequenced tick",
        "feed, on both anyio backends. A case **recovers** when the manager reconnects,",
        "resubscribes, and a tick broadcast after the recovery reaches the consumer; or it",
        "**fails** with the documented typed error. Every case also checks that the server saw",
        "every connection closed once the manager exited, that no task of the library was left,",
        "and that nothing hung. *Time* is measured from the fault to the tick received (or to",
        "the error raised); *bound* is what the test asserts on it. Delays used: reconnect_delay",
        "0.02 s, max_reconnect_delay 0.05 s, no jitter.",
        "",
        (
            f"Last run: {time.strftime('%Y-%m-%d')}, Python {platform.python_version()},"
            f" {sys.platform}, the test server from `managed_websocket.testing` unless noted."
        ),
        "",
        "| Fault | Injected as | Backend | Outcome | Time (measured) | Bound (asserted) | Notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in CASES:
        for backend in BACKENDS:
            row = matrix.rows[(case.id, backend)]
            lines.append(
                f"| {case.id} | {case.fault} | {backend} | {row.outcome} | "
                f"{_seconds(row.seconds)} | {'≤ ' + _seconds(row.bound) if row.bound else '—'} | "
                f"{row.note} |"
            )
    lines += ["", *TIMELINE_SECTION, ""]
    return "\n".join(lines)


#: The picture of one run, drawn by benchmarks/timeline.py (matplotlib: not a test dependency).
TIMELINE_SECTION = [
    "## Timeline of one run",
    "",
    (
        "![Ticks received per 100 ms through five faults, with the outages and lifecycle events]"
        "(charts/fault-timeline.svg)"
    ),
    "",
    "One real run of `python -m benchmarks.timeline` (the `[bench]` extra; about 7 s; the chart's",
    "title gives its date and Python): a managed connection consumes 100 ticks/s from the test",
    "server while, one after the other, the server drops the TCP connection, closes with 1013",
    "(the manager waits `server_unavailable_delay`, 0.5 s), goes silent (keepalive: ping 0.2 s,",
    "timeout 0.2 s; the outage starts when the missing pong is noticed, not when the silence",
    "starts), refuses two upgrades with 503 after a drop (two `ConnectFailed`), and the",
    "connection is rotated make-before-break (a covered outage: no tick lost). The upper panel",
    "shows ticks received per 100 ms and the outages from `ws.outages`; the lower one the",
    "lifecycle events received by `on_event`.",
]
