"""Exponential backoff with jitter, and a clear failure once the manager gives up."""

from managed_websocket import (
    DisconnectReason,
    ManagedWebSocket,
    ReconnectStrategy,
    WebSocketReconnectError,
)

BASE_DELAY = 1.0  # attempt n waits min(BASE_DELAY * 2 ** (n - 1), MAX_DELAY), minus jitter
MAX_DELAY = 60.0


def handle(message: object) -> None:
    """Your code."""


async def main(url: str) -> tuple[WebSocketReconnectError | None, list[DisconnectReason]]:
    reasons: list[DisconnectReason] = []
    ws = ManagedWebSocket(
        url,
        reconnect_strategy=ReconnectStrategy.EXPONENTIAL_BACKOFF,
        reconnect_delay=BASE_DELAY,
        max_reconnect_delay=MAX_DELAY,
        reconnect_jitter=0.5,  # each delay d is drawn from [d / 2, d]
        max_reconnect_attempts=5,
        on_disconnect=reasons.append,
    )
    try:
        async with ws:
            await ws.subscribe("btcusdt@trade")
            async for message in ws:
                handle(message)
    except WebSocketReconnectError as exc:
        # exc.attempts dials failed; exc.last_error says why the last one did.
        return exc, reasons
    return None, reasons  # closed by someone else: not a failure
