"""Make-before-break rotation: a fresh connection every 23 h, without a gap or a repeat."""

from managed_websocket import ManagedWebSocket, open_managed_websocket

MAX_AGE = 23 * 3600.0  # the exchange cuts every connection after 24 h


def trade_id(message: object) -> object:
    """What identifies a message on both connections; None: not deduplicated."""
    if isinstance(message, dict) and message.get("type") == "trade":
        return message["seq"]  # on Binance, the trade id "t"
    return None


async def main(url: str) -> tuple[list[int], ManagedWebSocket]:
    seqs = []
    async with open_managed_websocket(
        url,
        max_connection_age=MAX_AGE,  # rotate once a connection is this old
        dedup_key=trade_id,  # a trade both connections received is delivered once
    ) as ws:
        await ws.subscribe("btcusdt@trade")
        async for message in ws:
            if trade_id(message) is not None:
                seqs.append(message["seq"])
            if ws.stats.rotations and len(seqs) >= 100:  # this example stops after a rotation
                break
    return seqs, ws
