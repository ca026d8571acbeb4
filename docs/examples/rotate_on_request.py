"""Rotate from your own task: close gracefully now, let the manager dial again by itself."""

import anyio

from managed_websocket import (
    DisconnectEvent,
    DisconnectReason,
    ManagedWebSocket,
    open_managed_websocket,
)

MAX_AGE = 23 * 3600.0  # rotate well before the exchange's 24 h cut
CHECK_EVERY = 60.0


def handle(message: object) -> None:
    """Your trading logic."""


async def rotate_before_cut(ws: ManagedWebSocket) -> None:
    while True:
        await anyio.sleep(CHECK_EVERY)
        if ws.connection_duration > MAX_AGE:
            # Close 1000 now; returns at once, the manager reconnects 0.1 s later.
            await ws.request_disconnect(reconnect_after=0.1, reason=DisconnectReason.SCHEDULED)


async def main(url: str) -> DisconnectEvent | None:
    async with open_managed_websocket(url) as ws, anyio.create_task_group() as tg:
        tg.start_soon(rotate_before_cut, ws)
        await ws.subscribe("btcusdt@trade")
        async for message in ws:
            handle(message)
            if ws.stats.connects == 2:  # this example stops after the first rotation
                tg.cancel_scope.cancel()
                return ws.last_disconnect  # why the first connection ended
    return None
