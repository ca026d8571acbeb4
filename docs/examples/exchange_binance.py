"""Binance user data: a listen key in the URL, fresh for every connection; acknowledged streams."""

from collections.abc import Awaitable, Callable

from managed_websocket import BinanceSubscriptions, open_managed_websocket

BASE = "wss://stream.binance.com:9443"


async def main(base: str, create_listen_key: Callable[[], Awaitable[str]]) -> list[object]:
    """``create_listen_key``: your ``POST /api/v3/userDataStream`` call (it expires after 60 min
    without a keepalive, and Binance cuts every connection after 24 h anyway)."""

    async def url() -> str:
        return f"{base}/ws/{await create_listen_key()}"  # asked before every dial

    received = []
    async with open_managed_websocket(url, subscription_protocol=BinanceSubscriptions()) as ws:
        # Returns once Binance answered {"result": null, "id": 1}; a refusal raises
        # WebSocketSubscriptionError. At most 4 messages a second go out (Binance closes with
        # 1008 above 5, its own pongs included) and 1,024 streams per connection.
        await ws.subscribe("btcusdt@trade", "ethusdt@trade")
        async for message in ws:  # the answers were consumed: only data arrives here
            received.append(message)
            if len(received) == 4:
                break
    return received
