"""permessage-deflate: on by default. See what the server agreed to, or switch it off."""

from __future__ import annotations

from managed_websocket import DeflateParams, connect_websocket, open_managed_websocket

SUBSCRIBE = '{"op": "subscribe", "args": ["trades.BTCUSDT", "trades.ETHUSDT"]}'


async def agreed(url: str) -> DeflateParams | None:
    """What the server accepted: DeflateParams, or None if it declined the offer."""
    async with connect_websocket(url) as conn:
        return conn.compression


async def main(url: str, compress: bool = True) -> str:
    async with open_managed_websocket(
        url,
        compression="deflate" if compress else None,  # "deflate" is the default
        max_message_size=4 * 1024 * 1024,  # counts inflated bytes: the bomb guard
        decode=None,
    ) as ws:
        await ws.send(SUBSCRIBE * 10)  # over 128 bytes: sent compressed
        reply: str = await ws.receive()
        return reply
