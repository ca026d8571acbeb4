"""Surviving the 24-hour cut: rotate before it, lose nothing, and know exactly what was lost."""

from managed_websocket import Outage, open_managed_websocket

MAX_AGE = 23.5 * 3600.0  # rotate well before the exchange's 24 h cut


def trade_seq(message: object) -> int | None:
    """The exchange's sequence number: the dedup key and the gap detector's input."""
    if isinstance(message, dict) and message.get("type") == "trade":
        return int(message["seq"])
    return None  # acks, "subscribed" replies...: neither deduplicated nor checked


async def main(url: str, trades_wanted: int) -> tuple[list[int], tuple[Outage, ...]]:
    seqs: list[int] = []
    async with open_managed_websocket(
        url,
        max_connection_age=MAX_AGE,  # planned: make-before-break, nothing lost
        dedup_key=trade_seq,  # a trade both connections saw is delivered once
        sequence_of=trade_seq,  # unplanned: the ledger says which trades went missing
    ) as ws:
        await ws.subscribe("btcusdt@trade")
        async for message in ws:
            seq = trade_seq(message)
            if seq is not None:
                seqs.append(seq)
            if len(seqs) >= trades_wanted:
                break
        return seqs, ws.outages  # one record per interval without a (covering) connection
