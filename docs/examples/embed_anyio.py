"""Run the manager in your own task group, next to the rest of your service."""

import anyio

from managed_websocket import ManagedWebSocket


async def main(url: str, limit: int = 3) -> list[dict]:
    trades = []
    ws = ManagedWebSocket(url)
    async with anyio.create_task_group() as tg:
        await tg.start(ws.run)  # returns once the first connection is open
        await ws.subscribe("btcusdt@trade")
        async for message in ws:
            if message.get("type") == "trade":
                trades.append(message)
                if len(trades) == limit:
                    break
        await ws.shutdown()  # run() returns, so the task group can exit
    return trades
