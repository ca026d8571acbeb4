"""managed_websocket clients (on whichever backend the runner starts): the managed object read
with ``async for`` or ``batches()``, with and without JSON decoding, and the connection layer."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from managed_websocket import (
    ManagedWebSocket,
    WebSocketConnection,
    connect_websocket,
    open_managed_websocket,
)

from ..wire import ECHO_TEXT
from .common import (
    CLOSE_TIMEOUT,
    MAX_MESSAGE_SIZE,
    QUEUE_SIZE,
    Client,
    Count,
    Echo,
    EchoPlan,
    StreamPlan,
    count_batches,
    count_each,
    echo_rounds,
    with_bounded_close,
)


class Managed:
    """``open_managed_websocket``: ``async for`` (``batches=False``) or ``ws.batches()``."""

    def __init__(self, *, batches: bool, json: bool) -> None:
        self.batches = batches
        self.options: dict[str, Any] = {
            "ping_interval": None,
            "queue_size": QUEUE_SIZE,
            "max_message_size": MAX_MESSAGE_SIZE,
            "close_timeout": CLOSE_TIMEOUT,
        }
        if not json:
            self.options["decode"] = None  # else the default: decode_json_or_raw

    def _open(self, url: str) -> ManagedWebSocket:
        return open_managed_websocket(url, **self.options)

    async def stream(self, url: str, plan: StreamPlan) -> Count:
        async def measure(ws: ManagedWebSocket) -> Count:
            if self.batches:
                return await count_batches(ws.batches().__anext__, plan)
            return await count_each(aiter(ws).__anext__, plan)

        return await with_bounded_close(lambda: self._open(url), measure)

    async def echo(self, url: str, plan: EchoPlan) -> Echo:
        async def measure(ws: ManagedWebSocket) -> Echo:
            messages = ws.batches() if self.batches else aiter(ws)
            return await echo_rounds(ws.send, messages.__anext__, ECHO_TEXT, plan)

        return await with_bounded_close(lambda: self._open(url), measure)


class Connection:
    """The connection layer alone: ``connect_websocket`` and ``receive_batch()``."""

    def _open(self, url: str) -> AbstractAsyncContextManager[WebSocketConnection]:
        return connect_websocket(
            url, max_message_size=MAX_MESSAGE_SIZE, close_timeout=CLOSE_TIMEOUT
        )

    async def stream(self, url: str, plan: StreamPlan) -> Count:
        return await with_bounded_close(
            lambda: self._open(url), lambda conn: count_batches(conn.receive_batch, plan)
        )

    async def echo(self, url: str, plan: EchoPlan) -> Echo:
        return await with_bounded_close(
            lambda: self._open(url),
            lambda conn: echo_rounds(conn.send, conn.receive_batch, ECHO_TEXT, plan),
        )


def make(variant: str) -> Client:
    if variant == "connection":
        return Connection()
    return {
        "iter": Managed(batches=False, json=False),
        "json": Managed(batches=False, json=True),
        "batches": Managed(batches=True, json=False),
    }[variant]
