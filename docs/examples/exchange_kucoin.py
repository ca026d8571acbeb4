"""KuCoin: the endpoint and a token from a REST call before every dial; a custom protocol."""

import itertools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from managed_websocket import (
    Heartbeat,
    SubscriptionProtocol,
    SubscriptionReply,
    open_managed_websocket,
)


class KucoinSubscriptions(SubscriptionProtocol):
    """``{"id": .., "type": "subscribe", "topic": "/market/ticker:BTC-USDT", "response": true}``
    → ``{"id": .., "type": "ack"}``. Topics of one request share a prefix, so one per request."""

    acknowledged = True
    send_rate_limit = 10.0  # KuCoin allows 100 messages per 10 s

    def subscribe_request(self, channels: Sequence[str], request_id: int) -> object:
        return {"id": str(request_id), "type": "subscribe", "topic": channels[0], "response": True}

    def unsubscribe_request(self, channels: Sequence[str], request_id: int) -> object:
        return {
            "id": str(request_id),
            "type": "unsubscribe",
            "topic": channels[0],
            "response": True,
        }

    def parse_reply(self, message: Any) -> SubscriptionReply | None:
        if not (isinstance(message, dict) and message.get("type") in ("ack", "error")):
            return None
        request_id = int(message["id"]) if str(message.get("id", "")).isdigit() else None
        if message["type"] == "ack":
            return SubscriptionReply(ok=True, request_id=request_id)
        return SubscriptionReply(
            ok=False, request_id=request_id, code=message.get("code"), reason=str(message["data"])
        )


async def main(get_bullet: Callable[[], Awaitable[dict[str, Any]]]) -> list[object]:
    """``get_bullet``: your ``POST /api/v1/bullet-public``. Its token expires after 24 h, so a
    library that fetched it once could never reconnect."""
    connect_ids = itertools.count(1)
    ping_ids = itertools.count(1)

    async def url() -> str:
        bullet = await get_bullet()
        server = bullet["instanceServers"][0]
        # The token in the query is masked in logs, reprs and errors.
        return f"{server['endpoint']}?token={bullet['token']}&connectId={next(connect_ids)}"

    async with open_managed_websocket(
        url,
        subscription_protocol=KucoinSubscriptions(),
        heartbeat=Heartbeat(
            lambda: {"id": str(next(ping_ids)), "type": "ping"},  # a new id every time
            interval=18.0,  # the bullet's pingInterval
            is_reply=lambda m: isinstance(m, dict) and m.get("type") == "pong",
        ),
    ) as ws:
        await ws.subscribe("/market/ticker:BTC-USDT", "/market/ticker:ETH-USDT")
        received = []
        async for message in ws:
            received.append(message)
            if len(received) == 2:
                break
        return received
