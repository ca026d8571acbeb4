"""trio-websocket (wsproto on trio; it has no compression at all).

Settings: ``max_message_size`` 16 MiB, ``message_queue_size`` 10,000, ``receive_buffer_size``
256 KiB (its default is 4 KiB); ``get_message()`` is its only way to read.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from trio_websocket import WebSocketConnection, open_websocket_url

from ..wire import ECHO_TEXT
from .common import (
    CLOSE_TIMEOUT,
    MAX_MESSAGE_SIZE,
    QUEUE_SIZE,
    READ_SIZE,
    Client,
    Count,
    Echo,
    EchoPlan,
    StreamPlan,
    count_each,
    echo_rounds,
    with_bounded_close,
)


class TrioWebsocket:
    def _open(self, url: str) -> AbstractAsyncContextManager[WebSocketConnection]:
        return open_websocket_url(
            url,
            max_message_size=MAX_MESSAGE_SIZE,
            message_queue_size=QUEUE_SIZE,
            receive_buffer_size=READ_SIZE,
            disconnect_timeout=CLOSE_TIMEOUT,
        )

    async def stream(self, url: str, plan: StreamPlan) -> Count:
        return await with_bounded_close(
            lambda: self._open(url), lambda ws: count_each(ws.get_message, plan)
        )

    async def echo(self, url: str, plan: EchoPlan) -> Echo:
        return await with_bounded_close(
            lambda: self._open(url),
            lambda ws: echo_rounds(ws.send_message, ws.get_message, ECHO_TEXT, plan),
        )


def make(variant: str) -> Client:
    return TrioWebsocket()
