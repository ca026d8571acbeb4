"""A price display: only the latest prices matter, so a slow consumer drops the oldest."""

import anyio

from managed_websocket import open_managed_websocket

RENDER_TIME = 0.05  # a slow consumer: the feed is faster than this


async def render(message: object) -> None:
    await anyio.sleep(RENDER_TIME)


async def main(url: str, frames: int = 20) -> tuple[int, list[tuple[str, dict]]]:
    alerts = []
    async with open_managed_websocket(
        url,
        queue_size=10,
        overflow="drop_oldest",
        on_alert=lambda channel, message, context: alerts.append((channel, dict(context))),
    ) as ws:
        await ws.subscribe("btcusdt@trade")
        async for message in ws:
            await render(message)
            frames -= 1
            if frames == 0:
                break
        return ws.stats.messages_dropped, alerts
