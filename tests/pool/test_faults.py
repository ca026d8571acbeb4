"""The fault matrix of the pool: drop one shard, drop all, refuse new dials.

Against the local venue (per-connection caps, a connection rate), on asyncio and trio. Each case
checks who reconnected, what each new connection subscribed (only its own channels), that data
flows again with the right shard attached, and how the failure is reported when it is one.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from managed_websocket import (
    ChannelsReplaced,
    ShardFailed,
    ShardState,
    WebSocketHandshakeError,
    WebSocketReconnectError,
    open_managed_pool,
)
from managed_websocket.testing import ClientRecord

from ._venue import WAIT, Venue, dial_recorder, max_in_window, open_venue, wait_until

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {
    "reconnect_delay": 0.02,
    "max_reconnect_delay": 0.05,
    "reconnect_jitter": 0,
    "connection_timeout": 5,
    "close_timeout": 1,
}
RATE = (20, 1.0)
NAMES = [f"ch{i}" for i in range(6)]


def subscribed_on(record: ClientRecord) -> list[str]:
    """The channels a client asked for on this connection, in order."""
    requests = [json.loads(m) for m in record.messages]
    return [r["channel"] for r in requests if r.get("type") == "subscribe"]


async def expect_data(pool: Any, venue: Venue, expected: dict[str, int]) -> None:
    """Publish on each channel until its message reaches the consumer from the expected shard."""
    pending = dict(expected)
    while pending:
        for channel in pending:
            await venue.publish_if_subscribed(channel, probe=True)
        with anyio.move_on_after(0.2):
            async for shard, message in pool.stream(with_shard=True):
                if isinstance(message, dict) and message.get("probe"):
                    channel = message["channel"]
                    if channel in pending:
                        assert shard == pending.pop(channel), channel
                    if not pending:
                        return


async def test_drop_one_shard_only_it_reconnects_and_replays_its_own_channels() -> None:
    with anyio.fail_after(WAIT):
        async with (
            open_venue(per_connection=2, rate=RATE) as venue,
            open_managed_pool(
                venue.url, max_subscriptions_per_connection=2, connect_rate=RATE, **FAST
            ) as pool,
        ):
            await pool.subscribe(*NAMES)
            await wait_until(lambda: venue.acks == 6)
            victim = venue.owner["ch2"]  # shard 1: ch2, ch3
            await venue.server.drop_clients(victim)
            await wait_until(lambda: venue.acks == 8)
            assert [pool.stats.shards[i].connects for i in range(3)] == [1, 2, 1]
            assert len(venue.server.clients) == 4
            assert subscribed_on(venue.server.clients[3]) == ["ch2", "ch3"]
            await expect_data(pool, venue, {"ch0": 0, "ch2": 1, "ch3": 1, "ch5": 2})
            assert all(s.state is ShardState.ACTIVE for s in pool.shards.values())


async def test_drop_all_shards_each_reconnects_with_its_own_channels_within_the_rate() -> None:
    dials: list[float] = []
    with anyio.fail_after(WAIT):
        async with (
            open_venue(per_connection=2, rate=(3, 0.5)) as venue,
            open_managed_pool(
                dial_recorder(venue.url, dials),
                max_subscriptions_per_connection=2,
                connect_rate=(3, 0.5),
                **FAST,
            ) as pool,
        ):
            await pool.subscribe(*NAMES)
            await wait_until(lambda: venue.acks == 6)
            await venue.server.drop_clients()
            await wait_until(lambda: venue.acks == 12)
            assert [pool.stats.shards[i].connects for i in range(3)] == [2, 2, 2]
            # A redial the venue refused with 429 (its clock sees accepts, ours sees dials; under
            # load they can land 4 in its window) is a client record with no subscriptions: the
            # shard retried it within the rate. Count the upgraded connections only.
            redials = [r for r in venue.server.clients[3:] if r.handshake_completed]
            replays = sorted(subscribed_on(r) for r in redials)
            assert replays == [["ch0", "ch1"], ["ch2", "ch3"], ["ch4", "ch5"]]
            await expect_data(pool, venue, {c: NAMES.index(c) // 2 for c in NAMES})
    assert max_in_window(dials, 0.5) <= 3


async def test_a_refused_redial_fails_the_shard_and_its_channels_move_to_a_new_one() -> None:
    with anyio.fail_after(WAIT):
        async with (
            open_venue(per_connection=2, rate=RATE) as venue,
            open_managed_pool(
                venue.url, max_subscriptions_per_connection=2, connect_rate=RATE, **FAST
            ) as pool,
        ):
            events = pool.events()
            await pool.subscribe(*NAMES)
            await wait_until(lambda: venue.acks == 6)
            venue.server.refuse_handshakes(400)  # not retryable: the shard's manager fails
            await venue.server.drop_clients(venue.owner["ch2"])
            failed = replaced = None
            async for event in events:
                if isinstance(event.event, ShardFailed):
                    failed = event
                if isinstance(event.event, ChannelsReplaced):
                    replaced = event
                    break
            assert failed is not None
            assert replaced is not None
            assert failed.shard == replaced.shard == 1
            assert isinstance(failed.event, ShardFailed)
            assert isinstance(failed.event.error, WebSocketHandshakeError)
            assert failed.event.error.status_code == 400
            assert isinstance(replaced.event, ChannelsReplaced)
            assert replaced.event.channels == ("ch2", "ch3")
            assert replaced.event.placement == {3: 2}
            assert pool.shards[1].state is ShardState.FAILED
            assert pool.shards[1].error is failed.event.error
            assert pool.subscriptions == {0: ("ch0", "ch1"), 2: ("ch4", "ch5"), 3: ("ch2", "ch3")}
            await expect_data(pool, venue, {"ch0": 0, "ch2": 3, "ch3": 3, "ch4": 2})
            assert pool.stats.shards_failed == 1
            assert pool.stats.channels_replaced == 2
            assert [pool.stats.shards[i].connects for i in (0, 2)] == [1, 1]


async def test_dials_refused_for_rate_are_retried_within_the_rate() -> None:
    """The pool dials faster than the venue allows (misconfigured): 429s are retried, every
    retry takes a connect_rate slot, and every channel ends up subscribed."""
    with anyio.fail_after(WAIT):
        async with (
            open_venue(per_connection=1, rate=(2, 0.5)) as venue,
            open_managed_pool(
                venue.url,
                max_subscriptions_per_connection=1,
                connect_rate=(4, 0.5),
                max_reconnect_attempts=None,
                **FAST,
            ) as pool,
        ):
            await pool.subscribe(*NAMES)
            await wait_until(lambda: venue.acks == 6)
            assert venue.rate_refusals > 0
            assert all(s.state is ShardState.ACTIVE for s in pool.shards.values())
            assert pool.stats.shards_failed == 0
            assert venue.rejected == []


async def test_when_every_dial_fails_the_pool_fails_with_the_reconnect_error() -> None:
    received: list[Any] = []
    with anyio.fail_after(WAIT):
        async with open_venue(per_connection=2) as venue:
            pool = open_managed_pool(
                venue.url,
                max_subscriptions_per_connection=2,
                connect_rate=RATE,
                max_reconnect_attempts=2,
                **FAST,
            )
            with pytest.raises(WebSocketReconnectError) as caught:
                await _cut_every_dial_and_consume(pool, venue, received)
            assert isinstance(caught.value.last_error, WebSocketHandshakeError)
            # The consumer got what arrived before, then the same error, not an end.
            with pytest.raises(WebSocketReconnectError):
                await pool.receive(timeout=WAIT)
    assert {"type": "data", "channel": "ch0", "n": 1} in received
    assert pool.is_closed
    assert any(s.state is ShardState.FAILED for s in pool.shards.values())


async def test_a_pool_whose_first_dials_all_fail_raises_from_subscribe() -> None:
    with anyio.fail_after(WAIT):
        async with open_venue(per_connection=2) as venue:
            venue.server.refuse_handshakes(503, count=None)
            pool = open_managed_pool(
                venue.url,
                max_subscriptions_per_connection=2,
                connect_rate=RATE,
                max_reconnect_attempts=1,
                **FAST,
            )
            with pytest.raises(WebSocketReconnectError):
                await _subscribe_in(pool, "a")
            assert pool.shards[0].state is ShardState.FAILED


async def _cut_every_dial_and_consume(pool: Any, venue: Venue, received: list[Any]) -> None:
    async with pool:
        await pool.subscribe(*NAMES[:4])
        await wait_until(lambda: venue.acks == 4)
        await venue.publish("ch0", n=1)
        venue.server.refuse_handshakes(503, count=None)
        await venue.server.drop_clients()
        async for message in pool:
            received.append(message)  # noqa: PERF401 - keeps what came before the error


async def _subscribe_in(pool: Any, *channels: str) -> None:
    async with pool:
        await pool.subscribe(*channels)
