"""Exchange protocols against the testing kit's venue, on both backends: acknowledged and
refused subscriptions in each shipped dialect, their replay, max_subscriptions, the send rate
limit, application heartbeats, the server's application pings, and the data watchdog."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import anyio
import pytest

from managed_websocket import (
    BinanceSubscriptions,
    BybitSubscriptions,
    DisconnectReason,
    Heartbeat,
    ManagedWebSocket,
    OkxSubscriptions,
    PingReply,
    SubscriptionFailed,
    SubscriptionsReplayed,
    WebSocketClosedError,
    WebSocketSubscriptionError,
    WebSocketTimeoutError,
)
from managed_websocket.testing import open_test_server, open_venue

from ._harness import FAST, WAIT, Recorder, wait_until

pytestmark = pytest.mark.anyio


def requests_seen(server: Any, client: int = 0) -> list[Any]:
    return [json.loads(m) for m in server.clients[client].messages if isinstance(m, str)]


# -- Acknowledged subscriptions ---------------------------------------------------------------


async def test_binance_subscribe_returns_once_acknowledged_and_raises_on_a_refusal() -> None:
    async with (
        open_test_server(echo=False) as server,
        open_venue(server, "binance") as venue,
        ManagedWebSocket(server.url, subscription_protocol=BinanceSubscriptions(), **FAST) as ws,
    ):
        venue.reject("nosuch@trade", code=2, reason="Invalid symbol")
        venue.hold_answers(0.05)  # subscribe() waits for the answer, not just the send
        with anyio.fail_after(WAIT):
            started = anyio.current_time()
            await ws.subscribe("btcusdt@trade", "ethusdt@trade")
            assert anyio.current_time() - started >= 0.05 - 0.005
            assert venue.subscriptions(server.clients[0]) == ("btcusdt@trade", "ethusdt@trade")
            with pytest.raises(WebSocketSubscriptionError) as refused:
                await ws.subscribe("nosuch@trade")
        assert refused.value.channels == ("nosuch@trade",)
        assert refused.value.code == 2
        assert refused.value.reason == "Invalid symbol"
        assert "Invalid symbol" in str(refused.value)
        # A refused channel is not subscribed: it is not replayed either.
        assert ws.subscriptions == ("btcusdt@trade", "ethusdt@trade")
        # One request for both channels, then one for the refused one, ids from the manager.
        assert requests_seen(server) == [
            {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "ethusdt@trade"], "id": 1},
            {"method": "SUBSCRIBE", "params": ["nosuch@trade"], "id": 2},
        ]
        # The answers were consumed, not delivered; data is.
        await venue.publish("btcusdt@trade", {"e": "trade", "s": "BTCUSDT"})
        with anyio.fail_after(WAIT):
            assert await ws.receive() == {"e": "trade", "s": "BTCUSDT"}
        assert ws.stats.messages_consumed == 2
        assert ws.stats.messages_received == 3


async def test_an_unanswered_request_fails_at_ack_timeout_and_a_late_answer_is_delivered() -> None:
    async with (
        open_test_server(echo=False) as server,
        open_venue(server, "binance") as venue,
        ManagedWebSocket(
            server.url,
            subscription_protocol=BinanceSubscriptions(),
            ack_timeout=0.1,
            **FAST,
        ) as ws,
    ):
        venue.hold_answers(0.3)
        with anyio.fail_after(WAIT):
            with pytest.raises(WebSocketSubscriptionError, match="no answer within ack_timeout"):
                await ws.subscribe("btcusdt@trade")
            assert ws.subscriptions == ()
            # Nobody waits for it any more: the late answer is the user's to see.
            assert await ws.receive() == {"result": None, "id": 1}


async def test_okx_answers_each_channel_and_an_anonymous_error_fails_the_oldest_request() -> None:
    async with (
        open_test_server(echo=False) as server,
        open_venue(server, "okx") as venue,
        ManagedWebSocket(server.url, subscription_protocol=OkxSubscriptions(), **FAST) as ws,
    ):
        venue.reject("tickers:NOPE-USDT", code="60018", reason="channel doesn't exist")
        with anyio.fail_after(WAIT):
            await ws.subscribe("tickers:BTC-USDT", "trades:ETH-USDT", "account")
            with pytest.raises(WebSocketSubscriptionError) as refused:
                await ws.subscribe("tickers:NOPE-USDT")
        assert (refused.value.code, refused.value.reason) == ("60018", "channel doesn't exist")
        assert ws.subscriptions == ("tickers:BTC-USDT", "trades:ETH-USDT", "account")
        assert requests_seen(server)[0] == {
            "op": "subscribe",
            "args": [
                {"channel": "tickers", "instId": "BTC-USDT"},
                {"channel": "trades", "instId": "ETH-USDT"},
                {"channel": "account"},
            ],
        }
        assert ws.stats.messages_consumed == 4  # three acks, one error


async def test_bybit_acknowledges_by_req_id_in_batches_of_ten() -> None:
    channels = [f"publicTrade.SYM{n}" for n in range(23)]
    async with (
        open_test_server(echo=False) as server,
        open_venue(server, "bybit") as venue,
        ManagedWebSocket(server.url, subscription_protocol=BybitSubscriptions(), **FAST) as ws,
    ):
        venue.reject("publicTrade.SYM22", reason="handler not found")
        with anyio.fail_after(WAIT), pytest.raises(WebSocketSubscriptionError) as refused:
            await ws.subscribe(*channels)
        # Three requests; the third (the refused channel's) fails as a whole.
        assert [len(r["args"]) for r in requests_seen(server)] == [10, 10, 3]
        assert [r["req_id"] for r in requests_seen(server)] == ["1", "2", "3"]
        assert refused.value.channels == tuple(channels[20:])
        assert refused.value.reason == "error:handler not found"
        assert ws.subscriptions == tuple(channels[:20])


async def test_max_subscriptions_refuses_before_anything_is_sent() -> None:
    async with (
        open_test_server(echo=False) as server,
        open_venue(server, "binance"),
        ManagedWebSocket(
            server.url,
            subscription_protocol=BinanceSubscriptions(),
            max_subscriptions=3,
            **FAST,
        ) as ws,
    ):
        with anyio.fail_after(WAIT):
            await ws.subscribe("a", "b")
            with pytest.raises(WebSocketSubscriptionError, match="max_subscriptions=3"):
                await ws.subscribe("c", "d")
            await ws.subscribe("c")
        assert ws.subscriptions == ("a", "b", "c")
        assert [r["params"] for r in requests_seen(server)] == [["a", "b"], ["c"]]


async def test_the_replay_is_batched_in_order_and_a_refusal_is_reported_not_fatal() -> None:
    alerts = Recorder()
    async with (
        open_test_server(echo=False) as server,
        open_venue(server, "binance") as venue,
        ManagedWebSocket(
            server.url,
            subscription_protocol=BinanceSubscriptions(),
            on_alert=alerts,
            **FAST,
        ) as ws,
    ):
        channels = [f"s{n:04d}@trade" for n in range(300)]
        events = ws.events()
        with anyio.fail_after(WAIT):
            await ws.subscribe(*channels)
            # The symbol is delisted while we are away: the replay is refused for it.
            venue.reject("s0150@trade", code=2, reason="Invalid symbol")
            await server.drop_clients()
            await server.wait_for_handshakes(2)
            replayed = None
            failed = None
            async for event in events:
                if isinstance(event, SubscriptionFailed):
                    failed = event
                if isinstance(event, SubscriptionsReplayed) and failed is not None:
                    replayed = event
                    break
        assert ws.is_connected  # a refused replay never kills the connection
        second = requests_seen(server, 1)
        assert [c for r in second for c in r["params"]] == channels  # in order, all of them
        assert len(second) == 2  # batched: 200 channels, or 4,000 characters, a request
        assert failed is not None
        assert failed.channels == tuple(second[0]["params"])  # the request holding s0150
        assert (failed.code, failed.reason) == (2, "Invalid symbol")
        assert replayed is not None
        assert (replayed.channels, replayed.requests, replayed.failed) == (300, 2, 200)
        assert ws.subscriptions == tuple(second[1]["params"])
        [(_, (kind, message, context))] = alerts.calls
        assert kind == "subscription_failed"
        assert "Invalid symbol" in message
        assert context["code"] == 2


# -- The send rate limit --------------------------------------------------------------------


async def test_the_send_rate_limit_keeps_a_burst_under_the_venues_limit() -> None:
    async with (
        open_test_server(echo=False) as server,
        open_venue(server, "generic") as venue,
    ):
        venue.limit_rate(20, per=1.0)
        # Without a limit, 25 messages at once get the connection closed with 1008.
        async with ManagedWebSocket(server.url, **FAST) as ws:
            with anyio.fail_after(WAIT):
                with contextlib.suppress(WebSocketClosedError):
                    for n in range(25):
                        await ws.send(f"m{n}")
                await server.clients[0].wait_closed()
                assert server.clients[0].close_code == 1008
        # With send_rate_limit the same burst is paced: 10 at once, 10 a second later, then 5;
        # nothing dropped, nobody closed. (Half the venue's limit: the venue counts when it
        # reads, and a busy machine may read two seconds' messages close together.)
        async with ManagedWebSocket(server.url, send_rate_limit=10, **FAST) as ws:
            client = server.clients[-1]
            started = anyio.current_time()
            with anyio.fail_after(WAIT):
                for n in range(25):
                    await ws.send(f"m{n}")
                elapsed = anyio.current_time() - started
                await server.wait_for_messages(25, client)
            assert elapsed >= 2.0 - 0.01
            assert client.messages == [f"m{n}" for n in range(25)]
            assert not client.closed
            assert ws.stats.connects == 1


# -- Application heartbeats -----------------------------------------------------------------


def is_pong(message: Any) -> bool:
    return message == "pong"


async def test_a_heartbeat_keeps_a_venue_that_wants_one_and_its_replies_are_consumed() -> None:
    async with (
        open_test_server(echo=False) as server,
        open_venue(server, "okx") as venue,
        ManagedWebSocket(
            server.url,
            heartbeat=Heartbeat("ping", interval=0.05, is_reply=is_pong, timeout=1.0),
            ping_interval=None,  # protocol pings do not count for the venue anyway
            **FAST,
        ) as ws,
    ):
        venue.require_heartbeat(within=0.3)
        with anyio.fail_after(WAIT):
            await wait_until(lambda: venue.heartbeats_received >= 12)  # > 0.6 s: twice `within`
        assert ws.stats.connects == 1
        assert ws.latency is not None
        assert 0 < ws.latency < 1.0
        assert ws.stats.messages_consumed >= 11
        await venue.publish("none", "x")  # nothing subscribed: nothing sent
        await server.send(server.clients[0], "data")
        with anyio.fail_after(WAIT):
            assert await ws.receive() == "data"  # the pongs never reached the consumer


async def test_without_the_heartbeat_the_venue_cuts_the_connection() -> None:
    async with (
        open_test_server(echo=False) as server,
        open_venue(server, "okx") as venue,
        ManagedWebSocket(server.url, **FAST) as ws,
    ):
        venue.require_heartbeat(within=0.1)
        with anyio.fail_after(WAIT):
            await server.clients[0].wait_closed()
            await wait_until(lambda: ws.last_disconnect is not None)
        assert server.clients[0].close_code == 4000
        assert ws.last_disconnect is not None
        assert ws.last_disconnect.close_reason == "no ping within 0.1 s"


@pytest.mark.parametrize("message_kind", ["str", "dict", "callable"])
async def test_an_unanswered_heartbeat_is_a_ping_timeout(message_kind: str) -> None:
    ids = iter(range(1, 1000))
    message: Any = {
        "str": "ping",
        "dict": {"op": "ping"},
        "callable": lambda: {"type": "ping", "id": str(next(ids))},
    }[message_kind]
    async with (
        open_test_server(echo=False) as server,
        open_venue(server) as venue,
        ManagedWebSocket(
            server.url,
            heartbeat=Heartbeat(message, interval=0.05, is_reply=is_pong, timeout=0.1),
            **FAST,
        ) as ws,
    ):
        venue.mute()  # the server still answers WebSocket pings, but never our heartbeat
        with anyio.fail_after(WAIT):
            await wait_until(lambda: ws.last_disconnect is not None)
        assert ws.last_disconnect is not None
        assert ws.last_disconnect.reason is DisconnectReason.PING_TIMEOUT
        sent = server.clients[0].messages[0]
        expected = {"str": "ping", "dict": '{"op":"ping"}', "callable": '{"type":"ping","id":"1"}'}
        assert sent == expected[message_kind]


# -- The server's application pings ---------------------------------------------------------


def htx_ping(message: Any) -> bool:
    return isinstance(message, dict) and "ping" in message


def htx_pong(message: Any) -> dict[str, Any]:
    return {"pong": message["ping"]}


async def test_ping_reply_answers_the_servers_pings_even_while_the_queue_is_full() -> None:
    async with (
        open_test_server(echo=False) as server,
        open_venue(server) as venue,
        ManagedWebSocket(
            server.url,
            ping_reply=PingReply(htx_ping, htx_pong),
            queue_size=2,
            overflow="block",
            **FAST,
        ) as ws,
    ):
        await ws.subscribe("market.btcusdt.trade.detail")
        venue.ping_clients(every=0.05, max_unanswered=2)
        with anyio.fail_after(WAIT):
            # (The generic protocol is not acknowledged: wait until the venue has it.)
            await wait_until(lambda: venue.subscriptions(server.clients[0]) != ())
            # Fill the queue and keep the consumer away: pings keep coming in between. Under
            # block, reading goes on while the batch waits for room, holding up to queue_size
            # more messages (two here), so the pings behind them are read and answered.
            for n in range(4):
                assert await venue.publish("market.btcusdt.trade.detail", {"n": n}) == 1
            await wait_until(lambda: ws.stats.messages_received >= 4)
            assert ws.stats.messages_consumed == 0
            pongs = venue.pongs_received
            await wait_until(lambda: venue.pongs_received >= pongs + 10)  # ten times the limit
            assert ws.stats.connects == 1
            received = [await ws.receive() for _ in range(4)]
        assert received == [{"n": n} for n in range(4)]  # in order; the pings never delivered
        pongs = [json.loads(m) for m in server.clients[0].messages if "pong" in str(m)]
        assert all(isinstance(p["pong"], int) for p in pongs)


async def test_a_consumer_that_stays_away_stops_the_reading_once_queue_size_more_are_held() -> None:
    async with (
        open_test_server(echo=False) as server,
        open_venue(server) as venue,
        ManagedWebSocket(
            server.url,
            ping_reply=PingReply(htx_ping, htx_pong),
            queue_size=2,
            overflow="block",
            **FAST,
        ) as ws,
    ):
        await ws.subscribe("c")
        with anyio.fail_after(WAIT):
            await wait_until(lambda: venue.subscriptions(server.clients[0]) != ())
            for n in range(5):
                await venue.publish("c", {"n": n})
            await wait_until(lambda: ws.stats.messages_received >= 4)
            venue.ping_clients(every=0.02, max_unanswered=2)
            # Two queued, two held, and the fifth waits in the socket: block's memory bound
            # holds, so the pings behind it go unanswered and the venue closes.
            await server.clients[0].wait_closed()
            assert venue.pongs_received == 0
            assert [await ws.receive() for _ in range(5)] == [{"n": n} for n in range(5)]


async def test_without_ping_reply_the_server_closes_after_two_unanswered_pings() -> None:
    async with (
        open_test_server(echo=False) as server,
        open_venue(server) as venue,
        ManagedWebSocket(server.url, **FAST) as ws,
    ):
        venue.ping_clients(every=0.03, max_unanswered=2)
        with anyio.fail_after(WAIT):
            assert htx_ping(await ws.receive())  # delivered as data, and never answered
            await server.clients[0].wait_closed()
        assert server.clients[0].close_reason == "2 pings unanswered"


# -- The data watchdog and fresh credentials ---------------------------------------------------


async def test_max_silence_replaces_a_connection_that_answers_pings_but_carries_nothing() -> None:
    async with (
        open_test_server(echo=False) as server,
        open_venue(server) as venue,
        ManagedWebSocket(
            server.url, ping_interval=0.02, ping_timeout=1.0, max_silence=0.3, **FAST
        ) as ws,
    ):
        venue.mute()
        with anyio.fail_after(WAIT):
            await wait_until(lambda: ws.last_disconnect is not None)
        assert ws.last_disconnect is not None
        assert ws.last_disconnect.reason is DisconnectReason.DATA_TIMEOUT
        assert server.clients[0].pings_received >= 5  # it answered pings all along


async def test_a_venue_that_wants_fresh_tokens_gets_one_per_dial() -> None:
    issued: list[str] = []

    def listen_key() -> str:
        issued.append(f"key{len(issued):020d}")
        return f"{server.url}/ws/{issued[-1]}"

    async with open_test_server(echo=False) as server, open_venue(server) as venue:
        # Only the newest key is valid: a reused URL would get 401 forever.
        venue.require_token(lambda record: record.path == f"/ws/{issued[-1]}")
        async with ManagedWebSocket(listen_key, **FAST) as ws:
            with anyio.fail_after(WAIT):
                for connects in (2, 3):
                    await server.drop_clients()
                    await wait_until(lambda n=connects: ws.stats.connects >= n and ws.is_connected)
        assert [c.path for c in server.clients] == [f"/ws/{key}" for key in issued]
        assert all(c.handshake_completed for c in server.clients)


async def test_a_rotation_replays_on_the_new_connection_and_its_answers_are_consumed() -> None:
    async with (
        open_test_server(echo=False) as server,
        open_venue(server, "binance") as venue,
        ManagedWebSocket(server.url, subscription_protocol=BinanceSubscriptions(), **FAST) as ws,
        anyio.create_task_group() as tg,
    ):
        await ws.subscribe("btcusdt@trade")

        async def feed() -> None:  # the new connection warms up on its first trade
            for n in range(10_000):
                await venue.publish("btcusdt@trade", {"e": "trade", "n": n})
                await anyio.sleep(0.005)

        tg.start_soon(feed)
        with anyio.fail_after(WAIT):
            assert await ws.rotate()
            tg.cancel_scope.cancel()
        second = requests_seen(server, 1)
        assert second == [{"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 2}]
        assert ws.stats.messages_consumed == 2  # both answers, neither delivered
        received = []
        with contextlib.suppress(WebSocketTimeoutError):
            while True:  # everything queued, until nothing more comes: trades only
                received.append(await ws.receive(timeout=0.1))
        assert received
        assert all(m.get("e") == "trade" for m in received)


@pytest.mark.parametrize("consumer", ["receive", "batches"])
async def test_a_burst_far_larger_than_the_queue_with_pings_in_it_loses_nothing(
    consumer: str,
) -> None:
    """Read-ahead under block, pushed past every buffer: 3,000 messages with a server ping
    after every 50th, a queue of 20 and a consumer that dawdles now and then."""
    async with (
        open_test_server(echo=False) as server,
        ManagedWebSocket(
            server.url,
            ping_reply=PingReply(htx_ping, htx_pong),
            queue_size=20,
            overflow="block",
            **FAST,
        ) as ws,
        anyio.create_task_group() as tg,
    ):
        await server.wait_for_handshakes(1)
        client = server.clients[0]
        total, pings = 3000, 0

        async def burst() -> None:
            nonlocal pings
            for n in range(total):
                await server.send(client, json.dumps({"n": n}))
                if n % 50 == 49:
                    pings += 1
                    await server.send(client, json.dumps({"ping": n}))

        tg.start_soon(burst)
        received: list[Any] = []
        with anyio.fail_after(WAIT * 4):
            while len(received) < total:
                if consumer == "receive":
                    received.append(await ws.receive())
                else:
                    received.extend(await ws.batches().__anext__())
                if len(received) % 500 < 5:
                    await anyio.sleep(0.02)  # the consumer falls behind now and then
            await server.wait_for_messages(pings, client)  # every ping was answered
        numbers = [m["n"] for m in received]
        out_of_order = next((i for i, n in enumerate(numbers) if n != i), None)
        assert out_of_order is None, f"at {out_of_order}: {numbers[out_of_order:][:5]}"
        assert ws.stats.messages_received == total + pings
        assert ws.stats.messages_consumed == pings
        assert ws.stats.messages_dropped == 0
        pongs = [json.loads(m)["pong"] for m in client.messages]
        assert pongs == list(range(49, total, 50)), f"{len(pongs)}: {pongs}"
