"""Quickstart on asyncio: the same code as on trio, only the last line differs."""

import asyncio
import sys

from managed_websocket import open_managed_websocket


async def main(url: str, limit: int = 5) -> list[object]:
    received = []
    async with open_managed_websocket(url) as ws:
        await ws.subscribe("btcusdt@trade")
        async for message in ws:  # survives reconnects
            print(message)
            received.append(message)
            if len(received) == limit:
                break
    return received


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "wss://stream.example.com/ws"))
