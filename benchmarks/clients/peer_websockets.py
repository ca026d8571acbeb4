"""websockets: the asyncio client and, where the installed version has it, the trio client.

Settings: ``compression=None`` (``"deflate"`` for the compressed firehose), ``max_size`` 16 MiB, ``max_queue`` 10,000 frames, no keepalive
pings, no proxy; ``recv()`` is what its ``async for`` calls.
"""

from __future__ import annotations

import importlib
from typing import Any

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
    count_each,
    echo_rounds,
    with_bounded_close,
)

OPTIONS: dict[str, Any] = {
    "compression": None,
    "max_size": MAX_MESSAGE_SIZE,
    "max_queue": QUEUE_SIZE,
    "ping_interval": None,
    "close_timeout": CLOSE_TIMEOUT,
    "proxy": None,
}


class Websockets:
    def __init__(self, module: str) -> None:
        self.connect = importlib.import_module(module).connect

    async def stream(self, url: str, plan: StreamPlan) -> Count:
        # The compressed firehose needs its default, permessage-deflate.
        options = OPTIONS | {"compression": "deflate"} if url.endswith("/deflate") else OPTIONS
        return await with_bounded_close(
            lambda: self.connect(url, **options), lambda ws: count_each(ws.recv, plan)
        )

    async def echo(self, url: str, plan: EchoPlan) -> Echo:
        return await with_bounded_close(
            lambda: self.connect(url, **OPTIONS),
            lambda ws: echo_rounds(ws.send, ws.recv, ECHO_TEXT, plan),
        )


def make(variant: str) -> Client:
    return Websockets(f"websockets.{variant}.client")
