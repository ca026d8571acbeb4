"""The same in a trio nursery: ws.run follows the nursery.start() protocol."""

import trio

from managed_websocket import ManagedWebSocket


async def main(url: str, limit: int = 3) -> list[dict]:
    trades = []
    ws = ManagedWebSocket(url)
    async with trio.open_nursery() as nursery:
        await nursery.start(ws.run)  # returns once the first connection is open
        await ws.subscribe("btcusdt@trade")
        async for message in ws:
            if message.get("type") == "trade":
                trades.append(message)
                if len(trades) == limit:
                    break
        await ws.shutdown()  # run() returns, so the nursery can exit
    return trades
