"""Staggered rotations: the pool rotates its shards in turn, never two within one window."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import pytest

from managed_websocket import RotationCompleted, RotationStarted, open_managed_pool

from ._venue import WAIT, open_venue, wait_until

pytestmark = pytest.mark.anyio

FAST: dict[str, Any] = {
    "reconnect_delay": 0.02,
    "max_reconnect_delay": 0.05,
    "reconnect_jitter": 0,
    "connection_timeout": 5,
    "close_timeout": 1,
}


async def test_shards_that_connected_together_rotate_one_window_apart() -> None:
    age, shards = 1.2, 3
    window = age / shards
    starts: list[tuple[float, int]] = []
    completed: set[int] = set()
    with anyio.fail_after(WAIT):
        async with (
            open_venue(per_connection=1) as venue,
            open_managed_pool(
                venue.url,
                max_subscriptions_per_connection=1,
                connect_rate=(50, 1.0),  # the three connect ~20 ms apart
                max_connection_age=age,
                **FAST,
            ) as pool,
        ):
            events = pool.events()
            await pool.subscribe("a", "b", "c")
            await wait_until(lambda: venue.acks == shards)
            async for event in events:
                if isinstance(event.event, RotationStarted):
                    starts.append((event.event.at, event.shard))
                if isinstance(event.event, RotationCompleted):
                    completed.add(event.shard)
                if len(starts) == 2 * shards:
                    break
            assert all(s.connects >= 2 for s in pool.stats.shards.values())
    times = [at for at, _ in starts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= window - 0.02, gaps  # wall-clock event times: a little slack
    assert {shard for _, shard in starts} == {0, 1, 2}
    assert completed == {0, 1, 2}
    # In turn: each shard once per cycle, the same order in every cycle.
    order = [shard for _, shard in starts]
    assert sorted(order[:shards]) == [0, 1, 2]
    assert order[shards:] == order[:shards]
