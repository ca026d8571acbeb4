"""Log in on every connection: on_connect runs before the subscriptions are replayed."""

import os

from managed_websocket import ManagedWebSocket

API_KEY = os.environ.get("EXCHANGE_API_KEY", "demo-key")


async def main(url: str, limit: int = 6) -> list[object]:
    async def log_in() -> None:
        await ws.send({"type": "login", "key": API_KEY})

    ws = ManagedWebSocket(url, on_connect=log_in)
    received = []
    async with ws:
        await ws.subscribe("account@orders", "btcusdt@trade")
        async for message in ws:
            received.append(message)
            if len(received) == limit:
                break
    return received
