"""Test your own feed code against the scripted server, on asyncio and trio."""

import json

import anyio
import pytest

from managed_websocket import open_managed_websocket
from managed_websocket.testing import open_test_server


async def first_prices(url: str, count: int, **options: object) -> list[float]:
    """The code under test: the first ``count`` BTC trade prices."""
    prices = []
    async with open_managed_websocket(url, **options) as ws:
        await ws.subscribe("btcusdt@trade")
        async for message in ws:
            if message.get("type") == "trade":
                prices.append(message["price"])
                if len(prices) == count:
                    break
    return prices


@pytest.mark.anyio
async def test_prices_survive_a_dropped_connection() -> None:
    prices = []

    async def run(url: str) -> None:
        # Explicit options are not clamped: a tiny delay keeps the test fast.
        prices.extend(await first_prices(url, 2, reconnect_delay=0.01))

    with anyio.fail_after(5):
        async with open_test_server(echo=False) as server, anyio.create_task_group() as tg:
            tg.start_soon(run, server.url)
            await server.wait_for_messages(1)  # the subscription
            await server.send(server.clients[0], json.dumps({"type": "trade", "price": 1.5}))
            await server.drop_clients()  # TCP FIN, no close frame

            await server.wait_for_messages(2)  # the subscription, replayed on connection 2
            second = server.clients[1]
            assert json.loads(second.messages[0]) == {
                "type": "subscribe",
                "channel": "btcusdt@trade",
            }
            await server.send(second, json.dumps({"type": "trade", "price": 2.5}))
    assert prices == [1.5, 2.5]
