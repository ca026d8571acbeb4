"""Notice a half-open connection: the server stops talking, but the socket stays open."""

from managed_websocket import DisconnectReason, open_managed_websocket

PING_INTERVAL = 20.0  # a ping every 20 s (the default) ...
PING_TIMEOUT = 10.0  # ... and the connection is dead if nothing comes back within 10 s


def handle(message: object) -> None:
    """Your code."""


async def main(url: str) -> tuple[list[DisconnectReason], float | None]:
    reasons: list[DisconnectReason] = []
    async with open_managed_websocket(
        url,
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        on_disconnect=reasons.append,
    ) as ws:
        await ws.subscribe("btcusdt@trade")
        async for message in ws:
            handle(message)
            if ws.stats.connects == 2:  # this example stops once it is back
                break
        return reasons, ws.latency  # latency: the last ping's round trip, in seconds
