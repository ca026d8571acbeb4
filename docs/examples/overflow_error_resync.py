"""An order book: a missed update makes it wrong, so an overflow means "resynchronise"."""

from managed_websocket import (
    ManagedWebSocket,
    WebSocketQueueFullError,
    open_managed_websocket,
)


class Book:
    def __init__(self) -> None:
        self.seq = 0
        self.resyncs = 0
        self.synced = True

    def apply(self, update: dict) -> None:
        if update.get("type") == "snapshot":
            self.seq, self.synced = update["seq"], True
        elif update.get("type") == "trade" and self.synced:
            self.seq = update["seq"]  # a real book would apply the update here


async def follow(ws: ManagedWebSocket, book: Book) -> bool:
    """Apply updates; return True after a loss (a snapshot is on its way), False at the end."""
    try:
        async for update in ws:
            book.apply(update)
            if book.resyncs and book.synced:  # this example stops after one resync
                return False
    except WebSocketQueueFullError as exc:
        print(f"{exc.dropped_count} updates lost: resynchronising")
        book.resyncs += 1
        book.synced = False
        await ws.send({"type": "snapshot", "channel": "btcusdt@depth"})
        return True
    return False  # the manager was closed


async def main(url: str, queue_size: int = 1000) -> Book:
    book = Book()
    async with open_managed_websocket(url, queue_size=queue_size, overflow="error") as ws:
        await ws.subscribe("btcusdt@depth")
        while await follow(ws, book):
            pass
    return book
