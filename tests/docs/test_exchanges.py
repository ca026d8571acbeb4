"""The "Connecting to real exchanges" guide: each example runs against the testing kit's venue
speaking that exchange's dialect, on asyncio and trio. Nothing here touches the internet."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from managed_websocket.testing import open_test_server, open_venue

from ._exchange import WAIT, wait_until
from .test_examples import Running, load

pytestmark = pytest.mark.anyio


async def test_binance_listen_key_fresh_for_every_connection() -> None:
    example = load("exchange_binance")
    keys: list[str] = []

    async def create_listen_key() -> str:
        await anyio.lowlevel.checkpoint()  # a REST call in real life
        keys.append(f"pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a6{len(keys)}")
        return keys[-1]

    running = Running()
    with anyio.fail_after(WAIT):
        async with (
            open_test_server(echo=False) as server,
            open_venue(server, "binance") as venue,
            anyio.create_task_group() as tg,
        ):
            venue.require_token(lambda record: record.path == f"/ws/{keys[-1]}")  # newest only
            tg.start_soon(running.run, example.main, server.url, create_listen_key)
            await wait_until(
                lambda: len(server.clients) == 1 and venue.subscriptions(server.clients[0]) != ()
            )
            await venue.publish("btcusdt@trade", {"e": "trade", "s": "BTCUSDT", "t": 1})
            await venue.publish("ethusdt@trade", {"e": "trade", "s": "ETHUSDT", "t": 2})
            await server.drop_clients()  # the 24-hour cut, early
            await wait_until(
                lambda: len(server.clients) == 2 and venue.subscriptions(server.clients[1]) != ()
            )
            for t in (3, 4):
                await venue.publish("btcusdt@trade", {"e": "trade", "s": "BTCUSDT", "t": t})
            await running.done.wait()
    assert [m["t"] for m in running.result] == [1, 2, 3, 4]
    assert [c.path for c in server.clients] == [f"/ws/{k}" for k in keys]
    assert len(keys) == 2
    requests = [json.loads(m) for m in server.clients[1].messages]
    assert requests == [
        {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "ethusdt@trade"], "id": 2}
    ]


async def test_okx_login_heartbeat_and_acknowledged_channels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    example = load("exchange_okx")
    monkeypatch.setattr(example, "HEARTBEAT_INTERVAL", 0.05)
    running = Running()
    with anyio.fail_after(WAIT):
        async with (
            open_test_server(echo=False) as server,
            open_venue(server, "okx") as venue,
            anyio.create_task_group() as tg,
        ):
            venue.require_heartbeat(within=0.2)  # OKX's 30 s, shrunk
            tg.start_soon(running.run, example.main, server.url)
            await wait_until(
                lambda: (
                    len(server.clients) == 1 and len(venue.subscriptions(server.clients[0])) == 2
                )
            )
            await wait_until(lambda: venue.heartbeats_received >= 8)  # > 0.4 s: twice `within`
            for n in range(3):
                await venue.publish(
                    "tickers:BTC-USDT", {"arg": {"channel": "tickers"}, "data": [{"last": n}]}
                )
            await running.done.wait()
    assert [m["data"][0]["last"] for m in running.result] == [0, 1, 2]
    assert len(server.clients) == 1  # the heartbeat kept the connection
    login = json.loads(server.clients[0].messages[0])
    assert login["op"] == "login"
    assert set(login["args"][0]) == {"apiKey", "passphrase", "timestamp", "sign"}


async def test_bybit_acknowledged_and_refused_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load("exchange_bybit")
    monkeypatch.setattr(example, "HEARTBEAT_INTERVAL", 0.05)
    symbols = [f"SYM{n}USDT" for n in range(12)]
    with anyio.fail_after(WAIT):
        async with open_test_server(echo=False) as server, open_venue(server, "bybit") as venue:
            venue.reject("publicTrade.SYM11USDT", reason="handler not found")
            venue.require_heartbeat(
                within=0.5,
                is_ping=lambda m: isinstance(m, dict) and m.get("op") == "ping",
                reply=lambda m: {"success": True, "ret_msg": "pong", "conn_id": "c", "op": "ping"},
            )
            subscribed, refused = await example.main(server.url, symbols)
    topics = [f"publicTrade.{s}" for s in symbols]
    assert subscribed == topics[:10]  # the first request (ten topics) was acknowledged
    assert refused == topics[10:]  # the second held the refused symbol


async def test_kucoin_token_and_endpoint_from_a_rest_call(monkeypatch: pytest.MonkeyPatch) -> None:
    example = load("exchange_kucoin")
    tokens: list[str] = []
    running = Running()
    with anyio.fail_after(WAIT):
        async with (
            open_test_server(echo=False) as server,
            open_venue(server, "kucoin") as venue,
            anyio.create_task_group() as tg,
        ):

            async def get_bullet() -> dict[str, Any]:
                tokens.append(
                    f"2neAiuYvAU61ZDXANAGAsiL4-iAExhsBXZxftpOeh_55i3Ysy2q2LEsEWU64mdzUOPusi34M_wGoSf7iNyEWJ{len(tokens)}"
                )
                return {"token": tokens[-1], "instanceServers": [{"endpoint": server.url + "/"}]}

            venue.require_token(lambda record: f"token={tokens[-1]}&" in record.path)
            tg.start_soon(running.run, example.main, get_bullet)
            await wait_until(
                lambda: (
                    len(server.clients) == 1 and len(venue.subscriptions(server.clients[0])) == 2
                )
            )
            await server.drop_clients()  # the token expires, the server cuts us
            await wait_until(
                lambda: (
                    len(server.clients) == 2 and len(venue.subscriptions(server.clients[1])) == 2
                )
            )
            for symbol in ("BTC-USDT", "ETH-USDT"):
                await venue.publish(
                    f"/market/ticker:{symbol}", {"type": "message", "topic": symbol}
                )
            await running.done.wait()
    assert [m["topic"] for m in running.result] == ["BTC-USDT", "ETH-USDT"]
    assert [c.path.split("&")[1] for c in server.clients] == ["connectId=1", "connectId=2"]
    assert len(tokens) == 2
    assert venue.subscriptions(server.clients[1]) == (
        "/market/ticker:BTC-USDT",
        "/market/ticker:ETH-USDT",
    )


async def test_htx_gzip_frames_and_server_pings() -> None:
    example = load("exchange_htx")

    def gzipped(data: Any) -> bytes:
        return gzip.compress(json.dumps(data).encode())

    running = Running()
    with anyio.fail_after(WAIT):
        async with (
            open_test_server(echo=False) as server,
            open_venue(server, "htx", encode=gzipped) as venue,
            anyio.create_task_group() as tg,
        ):
            venue.ping_clients(every=0.03, max_unanswered=2)
            tg.start_soon(running.run, example.main, server.url)
            await wait_until(
                lambda: len(server.clients) == 1 and venue.subscriptions(server.clients[0]) != ()
            )
            await wait_until(lambda: venue.pongs_received >= 10)  # unanswered twice: closed
            for n in range(3):
                await venue.publish(
                    "market.btcusdt.trade.detail", {"ch": "trade", "ts": time.time(), "n": n}
                )
            await running.done.wait()
    assert [m["n"] for m in running.result] == [0, 1, 2]  # no ping among them
    assert len(server.clients) == 1
