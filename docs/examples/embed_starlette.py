"""Starlette or FastAPI: one feed for the lifetime of the app, in its lifespan."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from managed_websocket import ManagedWebSocket

FEED_URL = os.environ.get("FEED_URL", "wss://stream.example.com/ws")


class LastPrice:
    value: float | None = None


async def follow(ws: ManagedWebSocket, last: LastPrice) -> None:
    async for message in ws:  # ends when the feed is shut down
        if message.get("type") == "trade":
            last.value = message["price"]


@asynccontextmanager
async def lifespan(app: object) -> AsyncIterator[dict[str, object]]:
    last = LastPrice()
    async with anyio.create_task_group() as tg:
        ws = ManagedWebSocket(FEED_URL)
        await tg.start(ws.run)  # the app starts serving once the feed is connected
        await ws.subscribe("btcusdt@trade")
        tg.start_soon(follow, ws, last)
        yield {"feed": ws, "last_price": last}  # becomes request.state.feed, .last_price
        await ws.shutdown()  # follow() and run() return: the task group exits


# app = Starlette(lifespan=lifespan)  or  app = FastAPI(lifespan=lifespan)
