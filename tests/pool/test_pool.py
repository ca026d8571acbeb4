"""The pool against a local venue that caps subscriptions per connection and connection rates.

Every test runs on asyncio and trio, with real sockets on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from managed_websocket import (
    Connected,
    ManagedWebSocketPool,
    MessagesDropped,
    PoolEvent,
    ShardClosed,
    ShardOpened,
    ShardState,
    WebSocketClosedError,
    WebSocketQueueFullError,
    WebSocketSubscriptionError,
    WebSocketTimeoutError,
    open_managed_pool,
)

from ._venue import WAIT, dial_recorder, max_in_window, open_venue, wait_until

pytestmark = pytest.mark.anyio

#: Small, exact delays for the shards (explicit keywords are not clamped).
FAST: dict[str, Any] = {
    "reconnect_delay": 0.02,
    "max_reconnect_delay": 0.05,
    "reconnect_jitter": 0,
    "connection_timeout": 5,
    "close_timeout": 1,
}
QUICK_RATE = (50, 1.0)


def channels(n: int, prefix: str = "ch") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def data(message: Any) -> bool:
    return isinstance(message, dict) and message.get("type") == "data"


async def test_subscribe_fills_connections_up_to_the_cap_and_opens_new_ones() -> None:
    with anyio.fail_after(WAIT):
        async with (
            open_venue(per_connection=4) as venue,
            open_managed_pool(
                venue.url, max_subscriptions_per_connection=4, connect_rate=QUICK_RATE, **FAST
            ) as pool,
        ):
            await pool.subscribe(*channels(10))
            assert pool.subscriptions == {
                0: ("ch0", "ch1", "ch2", "ch3"),
                1: ("ch4", "ch5", "ch6", "ch7"),
                2: ("ch8", "ch9"),
            }
            await pool.subscribe("ch10", "ch11", "ch12")
            assert pool.subscriptions[2] == ("ch8", "ch9", "ch10", "ch11")
            assert pool.subscriptions[3] == ("ch12",)
            await wait_until(lambda: venue.acks == 13)
            assert len(venue.server.clients) == 4
            assert venue.most_per_connection == 4
            assert venue.rejected == []
            for index, shard in pool.shards.items():
                assert shard.state is ShardState.ACTIVE
                assert shard.channels == pool.subscriptions[index]
                record = venue.owner[shard.channels[0]]  # the server's side of this shard
                assert venue.channels_of(record) == list(pool.subscriptions[index])


async def test_the_merged_stream_says_which_shard_each_message_came_from() -> None:
    with anyio.fail_after(WAIT):
        async with (
            open_venue(per_connection=2) as venue,
            open_managed_pool(
                venue.url, max_subscriptions_per_connection=2, connect_rate=QUICK_RATE, **FAST
            ) as pool,
        ):
            names = channels(6)
            await pool.subscribe(*names)
            await wait_until(lambda: venue.acks == 6)
            for name in names:
                assert await venue.publish(name, n=1)
            seen: dict[str, int] = {}
            async for shard, message in pool.stream(with_shard=True):
                if data(message):
                    seen[message["channel"]] = shard
                    if len(seen) == len(names):
                        break
            owner = {c: index for index, chans in pool.subscriptions.items() for c in chans}
            assert seen == owner


async def test_receive_batches_and_plain_iteration_share_one_stream() -> None:
    with anyio.fail_after(WAIT):
        async with (
            open_venue(per_connection=1) as venue,
            open_managed_pool(
                venue.url, max_subscriptions_per_connection=1, connect_rate=QUICK_RATE, **FAST
            ) as pool,
        ):
            await pool.subscribe("a", "b")
            await wait_until(lambda: venue.acks == 2)
            acks = [await pool.receive(timeout=WAIT) for _ in range(2)]
            assert sorted(m["channel"] for m in acks) == ["a", "b"]
            with pytest.raises(WebSocketTimeoutError):
                await pool.receive(timeout=0.05)
            for n in range(3):
                await venue.publish("a", n=n)
            got: list[Any] = []
            async for shard, batch in pool.batches(with_shard=True):
                assert shard == 0
                assert isinstance(batch, list)
                got.extend(batch)
                if len(got) == 3:
                    break
            assert [m["n"] for m in got] == [0, 1, 2]
            await venue.publish("b", n=9)
            async for message in pool:
                assert message == {"type": "data", "channel": "b", "n": 9}
                break


async def test_dials_stay_within_connect_rate() -> None:
    times: list[float] = []
    with anyio.fail_after(WAIT):
        async with open_venue(per_connection=1, rate=(4, 0.5)) as venue:
            url = dial_recorder(venue.url, times)
            async with open_managed_pool(
                url, max_subscriptions_per_connection=1, connect_rate=(4, 0.5), **FAST
            ) as pool:
                started = anyio.current_time()
                await pool.subscribe(*channels(9))
                took = anyio.current_time() - started
                await wait_until(lambda: venue.acks == 9)
    assert len(pool.shards) == 9
    assert max_in_window(times, 0.5) <= 4
    assert took >= 8 * 0.5 / 4  # nine dials, staggered: never a burst
    assert pool.stats.rate_limit_waits > 0


async def test_unsubscribe_frees_room_and_an_empty_shard_closes_after_the_grace() -> None:
    with anyio.fail_after(WAIT):
        async with (
            open_venue(per_connection=2) as venue,
            open_managed_pool(
                venue.url,
                max_subscriptions_per_connection=2,
                connect_rate=QUICK_RATE,
                empty_shard_grace=0.3,
                **FAST,
            ) as pool,
        ):
            events = pool.events()
            await pool.subscribe("a", "b", "c", "d")
            await pool.unsubscribe("b")
            await pool.subscribe("e")  # into the room "b" left on shard 0
            assert pool.subscriptions == {0: ("a", "e"), 1: ("c", "d")}
            await wait_until(lambda: venue.acks == 5)
            record = venue.owner["c"]  # the server's side of shard 1
            await pool.unsubscribe("c", "d")
            assert pool.subscriptions == {0: ("a", "e"), 1: ()}
            assert pool.shards[1].state is ShardState.EMPTY
            closed_at = None
            async for event in events:
                if isinstance(event.event, ShardClosed):
                    closed_at = anyio.current_time()
                    assert event.shard == 1
                    assert event.event.reason == "empty"
                    break
            assert closed_at is not None
            assert pool.shards[1].state is ShardState.STOPPED
            assert 1 not in pool.subscriptions
            await record.wait_closed()
            assert record.ended_by == "client_close"
            assert not venue.owner["a"].closed
            assert pool.stats.shards_closed == 1


async def test_a_shard_given_channels_within_the_grace_stays_open() -> None:
    with anyio.fail_after(WAIT):
        async with (
            open_venue(per_connection=2) as venue,
            open_managed_pool(
                venue.url,
                max_subscriptions_per_connection=2,
                connect_rate=QUICK_RATE,
                empty_shard_grace=0.2,
                **FAST,
            ) as pool,
        ):
            await pool.subscribe("a")
            await pool.unsubscribe("a")
            assert pool.shards[0].state is ShardState.EMPTY
            await pool.subscribe("b")
            assert pool.shards[0].state is ShardState.ACTIVE
            await anyio.sleep(0.4)
            assert pool.shards[0].state is ShardState.ACTIVE
            assert pool.subscriptions == {0: ("b",)}
            assert len(venue.server.clients) == 1
            assert not venue.server.clients[0].closed


async def test_max_connections_refuses_a_subscribe_that_does_not_fit() -> None:
    with anyio.fail_after(WAIT):
        async with (
            open_venue(per_connection=2) as venue,
            open_managed_pool(
                venue.url,
                max_subscriptions_per_connection=2,
                max_connections=2,
                connect_rate=QUICK_RATE,
                **FAST,
            ) as pool,
        ):
            await pool.subscribe("a", "b", "c")
            with pytest.raises(WebSocketSubscriptionError) as caught:
                await pool.subscribe("d", "e")
            assert caught.value.channels == ("d", "e")
            assert pool.subscriptions == {0: ("a", "b"), 1: ("c",)}
            await pool.subscribe("d")
            assert len(pool.shards) == 2


async def test_events_are_tagged_with_their_shard_and_stats_add_up() -> None:
    with anyio.fail_after(WAIT):
        async with (
            open_venue(per_connection=1) as venue,
            open_managed_pool(
                venue.url, max_subscriptions_per_connection=1, connect_rate=QUICK_RATE, **FAST
            ) as pool,
        ):
            events = pool.events()
            await pool.subscribe("a", "b", "c")
            await wait_until(lambda: venue.acks == 3)
            connected: set[int] = set()
            opened: set[int] = set()
            async for event in events:
                assert isinstance(event, PoolEvent)
                if isinstance(event.event, ShardOpened):
                    opened.add(event.shard)
                if isinstance(event.event, Connected):
                    connected.add(event.shard)
                if len(connected) == 3:
                    break
            assert opened == connected == {0, 1, 2}
            for name in ("a", "b", "c"):
                await venue.publish(name)
            received = 0
            async for message in pool:
                received += data(message)
                if received == 3:
                    break
            stats = pool.stats
            assert set(stats.shards) == {0, 1, 2}
            assert all(s.messages_received == 2 for s in stats.shards.values())  # ack + data
            assert stats.total.messages_received == 6
            assert stats.total.connects == 3
            assert stats.total.messages_sent == 3
            assert stats.shards_opened == 3


async def test_a_slow_consumer_holds_back_every_shard_under_block() -> None:
    per_shard = 400
    with anyio.fail_after(WAIT):
        async with (
            open_venue(per_connection=1) as venue,
            open_managed_pool(
                venue.url,
                max_subscriptions_per_connection=1,
                connect_rate=QUICK_RATE,
                queue_size=10,
                overflow="block",
                **FAST,
            ) as pool,
        ):
            await pool.subscribe("a", "b", "c")
            await wait_until(lambda: venue.acks == 3)
            async with anyio.create_task_group() as tg:
                for name in ("a", "b", "c"):
                    tg.start_soon(_publish_many, venue, name, per_shard)
                got: dict[str, list[int]] = {"a": [], "b": [], "c": []}
                async for message in pool:
                    if data(message):
                        got[message["channel"]].append(message["n"])
                        await anyio.lowlevel.checkpoint()  # a consumer slower than three feeds
                    if sum(map(len, got.values())) == 3 * per_shard:
                        break
            assert all(seq == list(range(per_shard)) for seq in got.values())
            assert pool.stats.messages_dropped == 0


async def test_drops_are_counted_per_shard_under_drop_newest() -> None:
    with anyio.fail_after(WAIT):
        async with (
            open_venue(per_connection=1) as venue,
            open_managed_pool(
                venue.url,
                max_subscriptions_per_connection=1,
                connect_rate=QUICK_RATE,
                queue_size=5,
                overflow="drop_newest",
                **FAST,
            ) as pool,
        ):
            events = pool.events()
            await pool.subscribe("a", "b")
            await wait_until(lambda: venue.acks == 2)
            await _publish_many(venue, "a", 3000)  # nobody reads: the merge fills, then "a"'s queue
            await wait_until(lambda: pool.stats.shards[0].messages_received >= 3001)
            dropped = pool.stats.dropped_per_shard
            assert dropped[0] > 0
            assert dropped[1] == 0
            assert pool.stats.messages_dropped == dropped[0]
            async for event in events:
                if isinstance(event.event, MessagesDropped):
                    assert event.shard == 0
                    break


async def test_overflow_error_reaches_the_consumer_at_its_place_in_the_stream() -> None:
    with anyio.fail_after(WAIT):
        async with (
            open_venue(per_connection=1) as venue,
            open_managed_pool(
                venue.url,
                max_subscriptions_per_connection=1,
                connect_rate=QUICK_RATE,
                queue_size=5,
                overflow="error",
                **FAST,
            ) as pool,
        ):
            await pool.subscribe("a")
            await wait_until(lambda: venue.acks == 1)
            await _publish_many(venue, "a", 3000)
            await wait_until(lambda: pool.stats.shards[0].messages_received >= 3001)
            with pytest.raises(WebSocketQueueFullError):
                await _receive_forever(pool)
            await venue.publish("a", n="after")
            while (await pool.receive(timeout=WAIT)).get("n") != "after":
                pass


async def test_consumers_drain_then_end_when_the_pool_shuts_down() -> None:
    with anyio.fail_after(WAIT):
        async with open_venue(per_connection=1) as venue:
            pool = open_managed_pool(
                venue.url,
                max_subscriptions_per_connection=1,
                connect_rate=QUICK_RATE,
                **FAST,
            )
            async with pool:
                await pool.subscribe("a", "b")
                await wait_until(lambda: venue.acks == 2)
                for name in ("a", "b"):
                    await _publish_many(venue, name, 300)
                await wait_until(lambda: pool.stats.total.messages_received == 602)
            got = [m async for m in pool if data(m)]
            assert sorted(m["n"] for m in got if m["channel"] == "a") == list(range(300))
            assert len(got) == 600
            with pytest.raises(WebSocketClosedError):
                await pool.subscribe("c")
            assert all(s.state is ShardState.STOPPED for s in pool.shards.values())
            assert all(r.ended_by == "client_close" for r in venue.server.clients)


async def test_run_embeds_in_a_task_group() -> None:
    with anyio.fail_after(WAIT):
        async with open_venue(per_connection=1) as venue:
            pool = ManagedWebSocketPool(
                venue.url, max_subscriptions_per_connection=1, connect_rate=QUICK_RATE, **FAST
            )
            async with anyio.create_task_group() as tg:
                await tg.start(pool.run)
                await pool.subscribe("a")
                assert (await pool.receive(timeout=WAIT))["type"] == "subscribed"
                await pool.shutdown()
            with pytest.raises(RuntimeError, match="only once"):
                await pool.run()


def test_pool_options_are_checked_and_named() -> None:
    url = "ws://127.0.0.1:1"
    with pytest.raises(TypeError, match="max_subscriptions_per_connection"):
        open_managed_pool(url, max_subscriptions_per_connection="10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_subscriptions_per_connection"):
        open_managed_pool(url, max_subscriptions_per_connection=0)
    with pytest.raises(ValueError, match="max_connections"):
        open_managed_pool(url, max_subscriptions_per_connection=1, max_connections=0)
    with pytest.raises(TypeError, match="connect_rate"):
        open_managed_pool(url, max_subscriptions_per_connection=1, connect_rate=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="connect_rate seconds"):
        open_managed_pool(url, max_subscriptions_per_connection=1, connect_rate=(5, 0))
    with pytest.raises(ValueError, match="empty_shard_grace"):
        open_managed_pool(url, max_subscriptions_per_connection=1, empty_shard_grace=-1)
    with pytest.raises(TypeError, match="ping_intervall"):
        open_managed_pool(url, max_subscriptions_per_connection=1, ping_intervall=3)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="max_connection_age"):
        open_managed_pool(url, max_subscriptions_per_connection=1, max_connection_age=0)
    with pytest.raises(ValueError, match="invalid WebSocket URL"):
        open_managed_pool("http://x", max_subscriptions_per_connection=1)


async def _publish_many(venue: Any, channel: str, count: int) -> None:
    for n in range(count):
        await venue.publish(channel, n=n)


async def _receive_forever(pool: ManagedWebSocketPool) -> None:
    while True:
        await pool.receive(timeout=WAIT)


async def test_an_acknowledging_protocol_per_shard_against_the_kits_binance_venue() -> None:
    """The pool on the exchange protocols of issue 13: each shard's subscribe() waits for the
    venue's answer, and a refusal reaches the pool's caller as WebSocketSubscriptionError."""
    from managed_websocket import BinanceSubscriptions
    from managed_websocket.testing import open_test_server
    from managed_websocket.testing import open_venue as open_kit_venue

    with anyio.fail_after(WAIT):
        async with (
            open_test_server(echo=False) as server,
            open_kit_venue(server, "binance", max_subscriptions=3) as venue,
            open_managed_pool(
                server.url,
                max_subscriptions_per_connection=3,
                connect_rate=QUICK_RATE,
                subscription_protocol=BinanceSubscriptions(),
                **FAST,
            ) as pool,
        ):
            await pool.subscribe(*channels(7))
            # (The shards dial concurrently: their order at the server may differ.)
            assert sorted(len(venue.subscriptions(c)) for c in server.clients) == [1, 3, 3]
            venue.reject("bad")
            with pytest.raises(WebSocketSubscriptionError) as refused:
                await pool.subscribe("bad")
            assert refused.value.channels == ("bad",)
            await venue.publish("ch6", {"type": "data", "n": 1})
            shard, message = await pool.stream(with_shard=True).__anext__()
            assert message == {"type": "data", "n": 1}
            assert "ch6" in pool.subscriptions[shard]
            assert (
                pool.stats.total.messages_consumed == 4
            )  # one answer per request: 3 + the refusal
