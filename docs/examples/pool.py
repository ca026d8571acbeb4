"""A whole market over many connections: one pool of shards, one consumer stream."""

from typing import Any

from managed_websocket import open_managed_pool

SYMBOLS = [f"sym{i}@trade" for i in range(12)]
PER_CONNECTION = 5  # Binance: 1024 streams per connection
CONNECT_RATE = (5, 1.0)  # at most 5 new connections per second, spaced evenly


async def main(url: str) -> tuple[dict[int, tuple[str, ...]], dict[int, set[str]]]:
    seen: dict[int, set[str]] = {}  # shard -> the channels it delivered trades for
    async with open_managed_pool(
        url,
        max_subscriptions_per_connection=PER_CONNECTION,
        connect_rate=CONNECT_RATE,
    ) as pool:
        await pool.subscribe(*SYMBOLS)  # 3 connections: 5 + 5 + 2 channels
        placement = pool.subscriptions  # {0: (...5), 1: (...5), 2: (...2)}
        message: Any
        async for shard, message in pool.stream(with_shard=True):
            if message.get("type") == "trade":
                seen.setdefault(shard, set()).add(message["channel"])
            if sum(map(len, seen.values())) == len(SYMBOLS):
                break
    return placement, seen
