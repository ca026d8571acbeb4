"""Every example under docs/examples/ runs here, on asyncio and on trio, against the test server.

The docs include these files with ``literalinclude``, so the code a reader sees is the code that
runs. Examples that wait hours in real life (a 23 h rotation, a 20 s ping) keep their real values
in module constants, which the tests shrink with ``monkeypatch``.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import ssl
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
import trustme

from conftest import Proxies
from managed_websocket import (
    ConnectionState,
    DeflateParams,
    DisconnectReason,
    WebSocketHandshakeError,
    WebSocketReconnectError,
)
from managed_websocket._deflate import OFFER
from managed_websocket.testing import open_test_server

from ._exchange import WAIT, open_exchange, wait_until

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLES = DOCS / "examples"

pytestmark = pytest.mark.anyio


def load(name: str) -> ModuleType:
    """Import ``docs/examples/<name>.py`` afresh (so patched constants never leak)."""
    spec = importlib.util.spec_from_file_location(f"docs_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Running:
    """An example's ``main`` running in the background while the test injects faults."""

    def __init__(self) -> None:
        self.result: Any = None
        self.done = anyio.Event()

    async def run(self, main: Any, *args: Any) -> None:
        self.result = await main(*args)
        self.done.set()


def trades(messages: list[Any]) -> list[dict[str, Any]]:
    return [m for m in messages if isinstance(m, dict) and m.get("type") == "trade"]


# ------------------------------------------------------------------------------ quickstart


def test_quickstarts_share_the_same_code() -> None:
    on_trio, on_asyncio = load("quickstart_trio"), load("quickstart_asyncio")
    assert inspect.getsource(on_trio.main) == inspect.getsource(on_asyncio.main)


@pytest.mark.parametrize("name", ["quickstart_trio", "quickstart_asyncio"])
async def test_quickstart(name: str) -> None:
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange:
            received = await load(name).main(exchange.url)
    assert received[0] == {"type": "subscribed", "channel": "btcusdt@trade"}
    assert len(trades(received)) == 4


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the script picks its own event loop
@pytest.mark.parametrize("name", ["quickstart_trio", "quickstart_asyncio"])
async def test_quickstart_script(name: str) -> None:
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange:
            done = await anyio.run_process(
                [sys.executable, str(EXAMPLES / f"{name}.py"), exchange.url]
            )
    lines = done.stdout.decode().splitlines()
    assert len(lines) == 5
    assert "'subscribed'" in lines[0]


# ------------------------------------------------------------------------------ concepts


async def test_gaps() -> None:
    example = load("gaps")
    running = Running()
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange, anyio.create_task_group() as tg:
            tg.start_soon(running.run, example.main, exchange.url)
            await exchange.wait_for_subscribers("btcusdt@trade")
            await wait_until(lambda: exchange.seq.get("btcusdt@trade", 0) >= 3)
            await exchange.server.drop_clients()
            await running.done.wait()
    [(first, last)] = running.result
    assert first <= last
    assert len(exchange.server.clients) == 2


# ------------------------------------------------------------------------------ trading


async def test_rotate_with_predicate(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load("rotate_with_predicate")
    monkeypatch.setattr(example, "MAX_AGE", 0.1)
    monkeypatch.setattr(example, "CHECK_EVERY", 0.05)
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange:
            event = await example.main(exchange.url)
    assert event.reason is DisconnectReason.CALLBACK_TRIGGERED
    first, second = exchange.server.clients
    assert first.close_code == 1000  # a graceful close from our side
    assert exchange.channels(second) == ["btcusdt@trade"]


async def test_rotate_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load("rotate_on_request")
    monkeypatch.setattr(example, "MAX_AGE", 0.1)
    monkeypatch.setattr(example, "CHECK_EVERY", 0.05)
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange:
            event = await example.main(exchange.url)
    assert (event.reason, event.code) == (DisconnectReason.SCHEDULED, 1000)
    first, second = exchange.server.clients
    assert first.close_code == 1000
    assert exchange.channels(second) == ["btcusdt@trade"]


async def test_rotation(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load("rotation")
    monkeypatch.setattr(example, "MAX_AGE", 0.2)
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange:
            seqs, ws = await example.main(exchange.url)
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap, no repeat
    assert ws.stats.rotations >= 1
    assert ws.stats.disconnects == 1  # only the final shutdown: a rotation is no disconnect
    assert any(outage.covered for outage in ws.outages)


async def test_survive_24h(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load("survive_24h")
    monkeypatch.setattr(example, "MAX_AGE", 0.15)
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange, anyio.create_task_group() as tg:

            async def cut_once() -> None:
                await exchange.wait_for_subscribers("btcusdt@trade", 3)  # after 2 rotations
                await exchange.server.drop_clients()  # an unplanned cut

            tg.start_soon(cut_once)
            seqs, outages = await example.main(exchange.url, 400)
            tg.cancel_scope.cancel()
    missing = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
    assert len(seqs) == len(set(seqs))  # no repeat, across every rotation
    assert seqs == sorted(seqs)
    covered = [o for o in outages if o.covered]
    lost = [o for o in outages if not o.covered]
    assert len(covered) >= 2
    assert all(o.first_missing is None for o in covered)  # rotations lose nothing
    assert len(lost) == 1  # the cut
    if missing:  # the ledger names exactly the trades that never arrived
        assert (lost[0].first_missing, lost[0].last_missing) == (missing[0], missing[-1])
        assert missing == list(range(missing[0], missing[-1] + 1))


async def test_critical_orders(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load("critical_orders")
    monkeypatch.setattr(example, "MAX_AGE", 0.05)
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange:
            exchange.ack_delay = 0.3  # the rotation falls due while the order is in flight
            seen = await example.main(exchange.url)
    kinds = [type(event).__name__ for event in seen]
    assert kinds[:4] == [
        "DisconnectDeferred",
        "RotationStarted",
        "SubscriptionsReplayed",  # on the new connection, before it takes over
        "RotationCompleted",
    ]
    deferred = seen[0]
    assert deferred.reason is DisconnectReason.SCHEDULED
    assert not deferred.forced
    assert deferred.waited > 0.1


async def test_request_response() -> None:
    example = load("request_response")
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange:
            exchange.ack_delay = 0.01
            acks, seen = await example.main(exchange.url)
    assert acks == [{"type": "ack", "id": n} for n in (1, 2, 3)]
    assert len(trades(seen)) == 5
    assert not [m for m in seen if isinstance(m, dict) and m.get("type") == "ack"]


# ------------------------------------------------------------------------------ reconnection


async def test_reconnect_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load("reconnect_policy")
    monkeypatch.setattr(example, "BASE_DELAY", 0.01)
    monkeypatch.setattr(example, "MAX_DELAY", 0.05)
    running = Running()
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange, anyio.create_task_group() as tg:
            tg.start_soon(running.run, example.main, exchange.url)
            await exchange.wait_for_subscribers("btcusdt@trade")
            exchange.server.refuse_handshakes(503, count=None)
            await exchange.server.drop_clients()
            await running.done.wait()
    error, reasons = running.result
    assert isinstance(error, WebSocketReconnectError)
    assert error.attempts == 5
    assert isinstance(error.last_error, WebSocketHandshakeError)
    assert error.last_error.status_code == 503
    assert reasons == [DisconnectReason.NETWORK_ERROR]
    assert len(exchange.server.clients) == 1 + 5


async def test_login_on_connect() -> None:
    example = load("login_on_connect")
    running = Running()
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange, anyio.create_task_group() as tg:
            exchange.paused = True  # only the answers to our requests
            tg.start_soon(running.run, example.main, exchange.url)
            await exchange.wait_for_subscribers("btcusdt@trade")
            await exchange.server.drop_clients()
            await running.done.wait()
    kinds = [message["type"] for message in running.result]
    assert kinds == ["login_ok", "subscribed", "subscribed"] * 2
    for client in exchange.server.clients:
        sent = [json.loads(message) for message in client.messages]
        assert sent == [
            {"type": "login", "key": "demo-key"},
            {"type": "subscribe", "channel": "account@orders"},
            {"type": "subscribe", "channel": "btcusdt@trade"},
        ]


# ------------------------------------------------------------------------------ backpressure


async def test_overflow_drop_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load("overflow_drop_oldest")
    monkeypatch.setattr(example, "RENDER_TIME", 0.005)
    running = Running()
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange, anyio.create_task_group() as tg:
            exchange.paused = True
            tg.start_soon(running.run, example.main, exchange.url)
            await exchange.wait_for_subscribers("btcusdt@trade")
            await exchange.burst("btcusdt@trade", 200)
            exchange.paused = False
            await running.done.wait()
    dropped, alerts = running.result
    assert dropped >= 150
    channel, context = alerts[0]
    assert channel == "queue_overflow"
    assert context["queue_size"] == 10
    assert context["overflow"] == "drop_oldest"
    assert context["dropped"] >= 150


async def test_overflow_error_resync() -> None:
    example = load("overflow_error_resync")
    running = Running()
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange, anyio.create_task_group() as tg:
            exchange.paused = True
            tg.start_soon(running.run, example.main, exchange.url, 10)
            await exchange.wait_for_subscribers("btcusdt@depth")
            await exchange.burst("btcusdt@depth", 100)
            await running.done.wait()
    book = running.result
    assert (book.resyncs, book.synced, book.seq) == (1, True, 100)


# ------------------------------------------------------------------------------ keepalive


async def test_keepalive(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load("keepalive")
    monkeypatch.setattr(example, "PING_INTERVAL", 0.05)
    monkeypatch.setattr(example, "PING_TIMEOUT", 0.1)
    running = Running()
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange, anyio.create_task_group() as tg:
            tg.start_soon(running.run, example.main, exchange.url)
            await exchange.wait_for_subscribers("btcusdt@trade")
            # Two pings received: the first pong came back, so ws.latency is set.
            await wait_until(lambda: exchange.server.clients[0].pings_received >= 2)
            exchange.server.silence_clients()  # half-open: the socket stays, nothing moves
            await running.done.wait()
    reasons, latency = running.result
    # on_disconnect runs for the final shutdown too (the list is returned from inside the block).
    assert reasons == [DisconnectReason.PING_TIMEOUT, DisconnectReason.USER_REQUESTED]
    assert latency is not None
    assert latency > 0


# ------------------------------------------------------------------------------ TLS, headers


async def test_tls_headers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEED_TOKEN", raising=False)
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with anyio.fail_after(WAIT):
        async with open_exchange(ssl_context=server_context, subprotocols=["feed.v1"]) as exchange:
            assert exchange.url.startswith("wss://")
            chosen = await load("tls_headers").main(exchange.url, str(ca_file))
    assert chosen == "feed.v1"
    assert exchange.server.clients[0].header("authorization") == "Bearer demo-token"


# ------------------------------------------------------------------------------ logging


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def test_logging_masking() -> None:
    example = load("logging_masking")
    logger = logging.getLogger("managed_websocket")
    level, handler = logger.level, _Records()
    example.configure_logging(handler)
    try:
        with anyio.fail_after(WAIT):
            async with open_exchange() as exchange:
                shown, masked = await example.main(exchange.url)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert shown == f"{exchange.url}/ws/***"
    assert masked == "wss://***@api.example.com/ws?apiKey=***&symbol=BTCUSDT"
    assert any(f"connected to {exchange.url}/ws/***" in line for line in handler.lines)
    assert not any(example.LISTEN_KEY in line for line in handler.lines)
    assert exchange.server.clients[0].path == f"/ws/{example.LISTEN_KEY}"  # sent in full


# ------------------------------------------------------------------------------ observability


async def test_observability() -> None:
    example = load("observability")
    running = Running()
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange, anyio.create_task_group() as tg:
            tg.start_soon(running.run, example.main, exchange.url)
            await exchange.wait_for_subscribers("btcusdt@trade")
            await wait_until(lambda: exchange.seq.get("btcusdt@trade", 0) >= 3)
            await exchange.server.drop_clients()
            await running.done.wait()
    seen, ws = running.result
    kinds = [type(event).__name__ for event in seen]
    assert kinds[:4] == ["Disconnected", "ReconnectScheduled", "Connecting", "Connected"]
    assert "GapDetected" in kinds
    assert kinds[-1] == "Disconnected"  # the shutdown at the end of the block
    lost = ws.outages[0]
    assert lost.reason is DisconnectReason.NETWORK_ERROR
    assert lost.first_missing is not None
    assert lost.duration is not None
    assert lost.duration > 0
    assert ws.stats.gaps_detected == 1


# ------------------------------------------------------------------------------ embedding


async def test_embed_anyio() -> None:
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange:
            received = await load("embed_anyio").main(exchange.url)
    assert len(trades(received)) == 3


@pytest.mark.parametrize("anyio_backend", ["trio"])  # a trio nursery needs trio
async def test_embed_trio() -> None:
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange:
            received = await load("embed_trio").main(exchange.url)
    assert len(trades(received)) == 3


async def test_embed_starlette_lifespan(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load("embed_starlette")
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange:
            monkeypatch.setattr(example, "FEED_URL", exchange.url)
            async with example.lifespan(app=None) as state:  # what the framework does
                ws, last = state["feed"], state["last_price"]
                assert ws.is_connected
                await wait_until(lambda: last.value is not None)
    assert ws.is_shutdown
    assert ws.state is ConnectionState.CLOSED


# ------------------------------------------------------------------------------ testing guide

# The example is a test module of its own: collected here, so it runs on both backends too.
test_testing_guide = load("testing_guide").test_prices_survive_a_dropped_connection


# ------------------------------------------------------------------------------ options


async def test_config_mapping() -> None:
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange:
            ws = await load("config_mapping").main(exchange.url)
    settings = ws._settings
    assert settings.ping_interval == 5.0
    assert settings.ping_timeout == 2.5
    assert (settings.reconnect_delay, settings.max_reconnect_delay) == (0.5, 30.0)
    assert settings.max_reconnect_attempts == 10
    assert settings.queue_size == 5000


# ------------------------------------------------------------------------------ migration


async def test_migration(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load("migration")
    monkeypatch.setattr(example, "RECHECK", 0.05)
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange:
            seen = await example.main(exchange.url)
    assert seen["echo"] == b"\x00\x01"
    assert seen["back"] is True
    assert seen["killed"] == (ConnectionState.DISCONNECTED, DisconnectReason.KILLED, True)
    assert seen["drained"] == []
    assert seen["after_exit"] == (ConnectionState.CLOSED, True, False)
    ended_by = [client.ended_by for client in exchange.server.clients]
    assert ended_by == ["client_close", "client_eof", "client_close", "client_close"]


# ------------------------------------------------------------------------------ CLI


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the command picks its own event loop
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
async def test_cli_watch(backend: str) -> None:
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange:
            done = await anyio.run_process(
                [
                    sys.executable,
                    "-m",
                    "managed_websocket",
                    exchange.url,
                    "--subscribe",
                    "btcusdt@trade",
                    "--count",
                    "3",
                    "--backend",
                    backend,
                ]
            )
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert lines[0] == {"type": "subscribed", "channel": "btcusdt@trade"}
    assert [line["type"] for line in lines[1:]] == ["trade", "trade"]
    assert "connected to" in done.stderr.decode()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
async def test_cli_demo(backend: str) -> None:
    done = await anyio.run_process(
        [sys.executable, "-m", "managed_websocket", "demo", "--seconds", "1", "--backend", backend]
    )
    assert "--- summary" in done.stderr.decode()


# ------------------------------------------------------------------------------ the pool


async def test_pool() -> None:
    with anyio.fail_after(WAIT):
        async with open_exchange() as exchange:
            placement, seen = await load("pool").main(exchange.url)
    symbols = [f"sym{i}@trade" for i in range(12)]
    assert placement == {0: tuple(symbols[:5]), 1: tuple(symbols[5:10]), 2: tuple(symbols[10:])}
    assert {shard: set(chans) for shard, chans in placement.items()} == seen
    assert len(exchange.server.clients) == 3


# ------------------------------------------------------------------------------ compression


async def test_compression() -> None:
    example = load("compression")
    with anyio.fail_after(WAIT):
        async with open_test_server(compression=True) as server:
            assert await example.agreed(server.url) == DeflateParams()
            assert await example.main(server.url) == example.SUBSCRIBE * 10
            assert await example.main(server.url, compress=False) == example.SUBSCRIBE * 10
            offers = [client.header("sec-websocket-extensions") for client in server.clients]
        async with open_test_server() as declining:
            assert await example.agreed(declining.url) is None
            assert await example.main(declining.url) == example.SUBSCRIBE * 10
    assert offers == [OFFER, OFFER, None]


# ------------------------------------------------------------------------------ proxies


async def test_proxy(proxies: Proxies, monkeypatch: pytest.MonkeyPatch) -> None:
    example = load("proxy")
    for name in ("ws_proxy", "http_proxy", "no_proxy", "WS_PROXY", "HTTP_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with anyio.fail_after(WAIT):
        async with open_test_server() as server:
            through = proxies.with_credentials(proxies.http_auth)
            assert await example.main(server.url, through) == "hello through the proxy"
            assert await example.main(server.url, proxies.socks5) == "hello through the proxy"
            monkeypatch.setenv("http_proxy", through)  # main() without proxy= reads it
            assert await example.main(server.url) == "hello through the proxy"
            assert await example.refused(server.url, proxies.http_auth) == 407
    assert len(server.clients) == 3
    assert proxies.log.read_text().count(f":{server.port}") >= 3
