"""Rotate before the exchange's 24 h cut, never while an order is in flight."""

from managed_websocket import DisconnectEvent, ManagedWebSocket

MAX_AGE = 23 * 3600.0  # the exchange closes every connection after 24 h: rotate before it does
CHECK_EVERY = 60.0  # how often should_disconnect is asked while connected


class Orders:
    """Your trading state; here only the orders still waiting for their acknowledgement."""

    in_flight = 0


def handle(message: object) -> None:
    """Your trading logic."""


async def main(url: str) -> DisconnectEvent | None:
    orders = Orders()

    def time_to_rotate() -> bool:
        return ws.connection_duration > MAX_AGE and orders.in_flight == 0

    ws = ManagedWebSocket(
        url,
        should_disconnect=time_to_rotate,
        disconnect_check_interval=CHECK_EVERY,
        should_reconnect=lambda: True,  # without it the manager stays down after the rotation
        reconnect_check_interval=0.5,  # asked this long after the disconnect
    )
    async with ws:
        await ws.subscribe("btcusdt@trade")
        async for message in ws:
            handle(message)
            if ws.stats.connects == 2:  # this example stops after the first rotation
                return ws.last_disconnect  # why the first connection ended
    return None
