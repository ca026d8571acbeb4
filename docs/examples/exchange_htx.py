"""HTX: gzip-compressed frames, and the server's {"ping": ts} answered with {"pong": ts}."""

import gzip
import json
from collections.abc import Sequence
from typing import Any

from managed_websocket import (
    PingReply,
    SubscriptionProtocol,
    SubscriptionReply,
    open_managed_websocket,
)


def decode(frame: str | bytes) -> Any:
    """HTX sends every message as gzip-compressed JSON in a binary frame."""
    if isinstance(frame, bytes):
        frame = gzip.decompress(frame).decode()
    return json.loads(frame)


class HtxSubscriptions(SubscriptionProtocol):
    """``{"sub": topic, "id": ..}`` → ``{"status": "ok", "subbed": topic, "id": ..}``."""

    acknowledged = True

    def subscribe_request(self, channels: Sequence[str], request_id: int) -> object:
        return {"sub": channels[0], "id": str(request_id)}

    def unsubscribe_request(self, channels: Sequence[str], request_id: int) -> object:
        return {"unsub": channels[0], "id": str(request_id)}

    def parse_reply(self, message: Any) -> SubscriptionReply | None:
        if not (isinstance(message, dict) and "status" in message and "id" in message):
            return None
        request_id = int(message["id"]) if str(message["id"]).isdigit() else None
        if message["status"] == "ok":
            return SubscriptionReply(ok=True, request_id=request_id)
        return SubscriptionReply(
            ok=False,
            request_id=request_id,
            code=message.get("err-code"),
            reason=str(message.get("err-msg", "")),
        )


async def main(url: str) -> list[object]:
    async with open_managed_websocket(
        url,
        decode=decode,
        subscription_protocol=HtxSubscriptions(),
        # HTX closes after two unanswered pings, so the answer goes out at once, even while
        # your code is slow and the queue is full; the ping is never delivered.
        ping_reply=PingReply(
            is_ping=lambda m: isinstance(m, dict) and "ping" in m,
            reply=lambda m: {"pong": m["ping"]},
        ),
    ) as ws:
        await ws.subscribe("market.btcusdt.trade.detail")
        received = []
        async for message in ws:
            received.append(message)
            if len(received) == 3:
                break
        return received
