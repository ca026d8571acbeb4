"""aiohttp's client WebSocket (``ClientSession.ws_connect``).

Settings: ``compress=0`` (``compress=15`` for the compressed firehose), ``max_msg_size`` 16 MiB, no heartbeat; its queue is not configurable.
``receive()`` is what its ``async for`` calls; it returns a WSMessage whose ``.data`` is the text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from ..wire import ECHO_TEXT
from .common import (
    CLOSE_TIMEOUT,
    MAX_MESSAGE_SIZE,
    Client,
    Count,
    Echo,
    EchoPlan,
    StreamPlan,
    count_each,
    echo_rounds,
    with_bounded_close,
)


@asynccontextmanager
async def _connect(url: str) -> AsyncIterator[Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            url,
            compress=15 if url.endswith("/deflate") else 0,  # the compressed firehose
            max_msg_size=MAX_MESSAGE_SIZE,
            heartbeat=None,
            timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT),
        ) as ws,
    ):
        yield ws


class Aiohttp:
    async def stream(self, url: str, plan: StreamPlan) -> Count:
        count = await with_bounded_close(
            lambda: _connect(url), lambda ws: count_each(ws.receive, plan)
        )
        count.sample = count.sample.data  # a WSMessage
        return count

    async def echo(self, url: str, plan: EchoPlan) -> Echo:
        result = await with_bounded_close(
            lambda: _connect(url), lambda ws: echo_rounds(ws.send_str, ws.receive, ECHO_TEXT, plan)
        )
        result.sample = result.sample.data
        return result


def make(variant: str) -> Client:
    return Aiohttp()
