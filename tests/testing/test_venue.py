"""The testing kit's venue, tried with clients that share no code with it (websockets on
asyncio, trio-websocket on trio): each behaviour as a user's own client would meet it."""

from __future__ import annotations

import gzip
import json
from typing import Any

import anyio
import pytest

from managed_websocket.testing import open_test_server, open_venue

from ._clients import ClientClosedError, connect, raw_connect, raw_upgrade

pytestmark = pytest.mark.anyio

WAIT = 5


async def read_until_closed(client: Any) -> None:
    while True:
        await client.recv()


async def recv_json(client: Any) -> Any:
    with anyio.fail_after(WAIT):
        return json.loads(await client.recv())


@pytest.mark.parametrize(
    ("dialect", "request_", "ack", "refusal"),
    [
        (
            "binance",
            {"method": "SUBSCRIBE", "params": ["{c}"], "id": 7},
            {"result": None, "id": 7},
            {"error": {"code": 2, "msg": "Invalid symbol"}, "id": 7},
        ),
        (
            "okx",
            {"op": "subscribe", "args": [{"channel": "tickers", "instId": "{c}"}]},
            {
                "event": "subscribe",
                "arg": {"channel": "tickers", "instId": "{c}"},
                "connId": "venue",
            },
            {"event": "error", "code": "2", "msg": "Invalid symbol", "connId": "venue"},
        ),
        (
            "bybit",
            {"op": "subscribe", "args": ["{c}"], "req_id": "7"},
            {"success": True, "ret_msg": "", "conn_id": "venue", "req_id": "7", "op": "subscribe"},
            {"success": False, "ret_msg": "error:Invalid symbol", "req_id": "7", "op": "subscribe"},
        ),
        (
            "kucoin",
            {"id": "7", "type": "subscribe", "topic": "/market/ticker:{c}", "response": True},
            {"id": "7", "type": "ack"},
            {"id": "7", "type": "error", "code": 2, "data": "Invalid symbol"},
        ),
    ],
)
async def test_subscriptions_are_acknowledged_or_refused_in_each_dialect(
    anyio_backend_name: str,
    dialect: Any,
    request_: dict[str, Any],
    ack: dict[str, Any],
    refusal: dict[str, Any],
) -> None:
    def fill(template: Any, channel: str) -> Any:
        return json.loads(json.dumps(template).replace("{c}", channel))

    async with (
        open_test_server(echo=False) as server,
        open_venue(server, dialect) as venue,
        connect(anyio_backend_name, server.url) as client,
    ):
        venue.reject(
            "NOPE" if dialect != "kucoin" else "/market/ticker:NOPE", reason="Invalid symbol"
        )
        if dialect == "okx":
            venue.reject("tickers:NOPE", reason="Invalid symbol")
        await client.send(json.dumps(fill(request_, "BTC")))
        assert await recv_json(client) == fill(ack, "BTC")
        await client.send(json.dumps(fill(request_, "NOPE")))
        assert await recv_json(client) == fill(refusal, "NOPE")
        [record] = server.clients
        assert len(venue.subscriptions(record)) == 1
        [(_, refused, code)] = venue.refusals
        assert "NOPE" in refused
        assert code == 2
        # Data reaches subscribers only.
        channel = venue.subscriptions(record)[0]
        assert await venue.publish(channel, {"data": 1}) == 1
        assert await venue.publish("other", {"data": 2}) == 0
        assert await recv_json(client) == {"data": 1}


async def test_a_per_connection_cap_and_withheld_answers(anyio_backend_name: str) -> None:
    async with (
        open_test_server(echo=False) as server,
        open_venue(server, "binance", max_subscriptions=2) as venue,
        connect(anyio_backend_name, server.url) as client,
    ):
        await client.send(json.dumps({"method": "SUBSCRIBE", "params": ["a", "b"], "id": 1}))
        assert await recv_json(client) == {"result": None, "id": 1}
        await client.send(json.dumps({"method": "SUBSCRIBE", "params": ["c"], "id": 2}))
        answer = await recv_json(client)
        assert answer["id"] == 2
        assert answer["error"]["msg"] == "too many subscriptions: at most 2 per connection"
        venue.hold_answers(None)
        await client.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["a"], "id": 3}))
        with anyio.move_on_after(0.2) as waited:
            await client.recv()
        assert waited.cancelled_caught  # never answered
        assert venue.subscriptions(server.clients[0]) == ("b",)


async def test_a_message_rate_above_the_limit_closes_with_1008(anyio_backend_name: str) -> None:
    async with open_test_server(echo=False) as server, open_venue(server) as venue:
        venue.limit_rate(5, per=1.0)
        async with connect(anyio_backend_name, server.url) as client:
            for n in range(6):
                await client.send(f"m{n}")
            with anyio.fail_after(WAIT):
                assert await client.wait_close_code() == 1008
        assert server.clients[0].close_reason == "too many messages: more than 5 in 1 s"


async def test_a_required_heartbeat_is_answered_and_its_absence_closes(
    anyio_backend_name: str,
) -> None:
    async with open_test_server(echo=False) as server, open_venue(server, "okx") as venue:
        venue.require_heartbeat(within=0.2)
        async with connect(anyio_backend_name, server.url) as client:
            for _ in range(4):  # 0.4 s, twice the limit, kept alive by pings
                await client.send("ping")
                with anyio.fail_after(WAIT):
                    assert await client.recv() == "pong"
                await anyio.sleep(0.1)
            with anyio.fail_after(WAIT):
                assert await client.wait_close_code() == 4000  # then silence: closed
        assert venue.heartbeats_received == 4
        assert server.clients[0].close_reason == "no ping within 0.2 s"


async def test_server_pings_must_be_answered(anyio_backend_name: str) -> None:
    def gzipped(data: Any) -> bytes:
        return gzip.compress(json.dumps(data).encode())

    async with (
        open_test_server(echo=False) as server,
        open_venue(server, "htx", encode=gzipped) as venue,
    ):
        venue.ping_clients(every=0.03, max_unanswered=2)
        async with connect(anyio_backend_name, server.url) as client:
            for _ in range(5):
                with anyio.fail_after(WAIT):
                    frame = await client.recv()
                assert isinstance(frame, bytes)
                ping = json.loads(gzip.decompress(frame))
                await client.send(json.dumps({"pong": ping["ping"]}))
            with anyio.fail_after(WAIT):
                await server.wait_for_messages(5)
            assert venue.pongs_received == 5
            with anyio.fail_after(WAIT), pytest.raises(ClientClosedError):
                await read_until_closed(client)  # now we stop answering
        assert server.clients[0].close_reason == "2 pings unanswered"


async def test_only_fresh_tokens_are_accepted() -> None:
    async with open_test_server(echo=False) as server, open_venue(server) as venue:
        venue.require_token(lambda record: record.path == "/ws/fresh")
        heads = []
        for path in ("/ws/stale", "/ws/fresh"):
            stream = await raw_connect(server.port)
            async with stream:
                heads.append((await raw_upgrade(stream, server.port, path)).split(b"\r\n")[0])
        assert heads[0].startswith(b"HTTP/1.1 401")
        assert heads[1].startswith(b"HTTP/1.1 101")


async def test_a_muted_venue_still_answers_protocol_pings(anyio_backend_name: str) -> None:
    async with (
        open_test_server(echo=False) as server,
        open_venue(server, "generic") as venue,
        connect(anyio_backend_name, server.url) as client,
    ):
        await client.send(json.dumps({"type": "subscribe", "channel": "c"}))
        with anyio.fail_after(WAIT):
            await server.wait_for_messages(1)  # handled by the venue before this task runs
        assert venue.subscriptions(server.clients[0]) == ("c",)
        venue.mute()
        assert await venue.publish("c", {"n": 1}) == 0
        with anyio.fail_after(WAIT):
            await client.ping()  # the WebSocket layer still answers
        venue.unmute()
        assert await venue.publish("c", {"n": 2}) == 1
        assert await recv_json(client) == {"n": 2}


async def test_an_unknown_dialect_is_refused() -> None:
    async with open_test_server() as server:
        with pytest.raises(ValueError, match="dialect must be one of"):
            async with open_venue(server, "kraken"):  # type: ignore[arg-type]
                pass
