"""Place orders over a WebSocket API with request(): each call returns its own acknowledgement,
while the trades keep streaming to the consumer (who never sees an acknowledgement)."""

import anyio

from managed_websocket import ManagedWebSocket, open_managed_websocket

ACK_TIMEOUT = 5.0


async def place(ws: ManagedWebSocket, order_id: int) -> dict[str, object]:
    def is_ack(message: object) -> bool:  # gets each message as decode made it
        return isinstance(message, dict) and message.get("id") == order_id

    answer: dict[str, object] = await ws.request(
        {"type": "order", "id": order_id}, match=is_ack, timeout=ACK_TIMEOUT
    )
    return answer


async def main(url: str, orders: int = 3, trades: int = 5) -> tuple[list[object], list[object]]:
    acks: list[object] = []
    seen: list[object] = []
    async with open_managed_websocket(url) as ws:
        await ws.subscribe("btcusdt@trade")

        async def trade_orders() -> None:
            for order_id in range(1, orders + 1):
                ack = await place(ws, order_id)  # or WebSocketTimeoutError
                acks.append(ack)

        async with anyio.create_task_group() as tg:
            tg.start_soon(trade_orders)
            async for message in ws:  # trades (and the subscription answer), no acks
                seen.append(message)
                if sum(isinstance(m, dict) and m.get("type") == "trade" for m in seen) == trades:
                    break
    return acks, seen
