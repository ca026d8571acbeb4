"""Across a reconnect: what was queued is still delivered, what the server sent meanwhile is not."""

from managed_websocket import open_managed_websocket


async def main(url: str) -> list[tuple[int, int]]:
    missing = []  # (first, last) sequence numbers that never arrived
    last = None
    async with open_managed_websocket(url) as ws:
        await ws.subscribe("btcusdt@trade")
        async for message in ws:  # one loop, across reconnects
            if message.get("type") != "trade":
                continue  # e.g. {"type": "subscribed", ...}, again after each reconnect
            seq = message["seq"]
            if last is not None and seq > last + 1:
                missing.append((last + 1, seq - 1))
            last = seq
            if missing:  # this example stops at the first gap
                break
    return missing
