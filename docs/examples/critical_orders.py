"""Hold planned disconnects and rotations while an order waits for its acknowledgement."""

import anyio

from managed_websocket import (
    LifecycleEvent,
    ManagedWebSocket,
    RotationCompleted,
    open_managed_websocket,
)

MAX_AGE = 23 * 3600.0
ACK_TIMEOUT = 5.0


class Orders:
    def __init__(self) -> None:
        self._acks: dict[str, anyio.Event] = {}

    def on_message(self, message: object) -> None:  # called in the receive loop
        if isinstance(message, dict) and message.get("type") == "ack":
            self._acks.pop(message["id"], anyio.Event()).set()

    async def place(self, ws: ManagedWebSocket, order_id: str) -> None:
        acked = self._acks[order_id] = anyio.Event()
        async with ws.critical():  # no planned disconnect, no rotation switch in here
            await ws.send({"type": "order", "id": order_id})
            with anyio.fail_after(ACK_TIMEOUT):
                await acked.wait()


async def main(url: str) -> list[LifecycleEvent]:
    orders = Orders()
    seen = []
    async with open_managed_websocket(
        url,
        on_message=orders.on_message,
        max_connection_age=MAX_AGE,
        max_defer=60.0,  # a stuck section cannot hold a rotation longer than this
    ) as ws:
        await ws.subscribe("account@orders")
        async with ws.events() as events:
            await orders.place(ws, "order-1")
            async for event in events:  # DisconnectDeferred, RotationStarted, ...
                seen.append(event)
                if isinstance(event, RotationCompleted):  # this example stops here
                    break
    return seen
