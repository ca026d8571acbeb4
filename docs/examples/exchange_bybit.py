"""Bybit: {"op": "ping"} every 20 s, subscriptions acknowledged by req_id, refusals reported."""

from typing import Any

from managed_websocket import (
    BybitSubscriptions,
    Heartbeat,
    WebSocketSubscriptionError,
    open_managed_websocket,
)

HEARTBEAT_INTERVAL = 20.0


def is_pong(message: Any) -> bool:
    # Public streams answer {"success": true, "ret_msg": "pong", "op": "ping", ...}.
    return isinstance(message, dict) and message.get("op") == "ping" and "success" in message


async def main(url: str, symbols: list[str]) -> tuple[list[str], list[str]]:
    async with open_managed_websocket(
        url,
        subscription_protocol=BybitSubscriptions(),  # 10 topics a request, req_id per request
        heartbeat=Heartbeat({"op": "ping"}, HEARTBEAT_INTERVAL, is_reply=is_pong),
    ) as ws:
        refused: list[str] = []
        try:
            await ws.subscribe(*(f"publicTrade.{symbol}" for symbol in symbols))
        except WebSocketSubscriptionError as exc:  # a listed symbol was refused ...
            refused = list(exc.channels)  # ... with the others of its request
        return list(ws.subscriptions), refused
