"""picows: Cython, asyncio, synchronous callbacks (``WSListener.on_ws_frame``), as its docs show.

Each text frame is turned into a ``str`` (``get_payload_as_utf8_text``) and each binary frame into
``bytes``, so it hands the application the same objects as the other clients. Echo sends the next
request from inside the callback, the picows way. Settings: ``max_frame_size`` 16 MiB, no
auto-ping; no compression (picows has none); no queue (callbacks).
"""

from __future__ import annotations

import asyncio

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from ..wire import ECHO_TEXT
from .common import (
    MAX_MESSAGE_SIZE,
    CallbackCounter,
    CallbackEcho,
    Client,
    Count,
    Echo,
    EchoPlan,
    StreamPlan,
)

_ECHO_BYTES = ECHO_TEXT.encode()


def _payload(frame: WSFrame) -> str | bytes | None:
    if frame.msg_type == WSMsgType.TEXT:
        return frame.get_payload_as_utf8_text()
    if frame.msg_type == WSMsgType.BINARY:
        return frame.get_payload_as_bytes()
    return None


class _Listener(WSListener):
    def __init__(self) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError("disconnected before the end"))


class _StreamListener(_Listener):
    def __init__(self, counter: CallbackCounter) -> None:
        super().__init__()
        self.counter = counter

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        message = _payload(frame)
        if message is not None and not self.done.done() and self.counter.add(message):
            self.finish()


class _EchoListener(_Listener):
    def __init__(self, echo: CallbackEcho) -> None:
        super().__init__()
        self.echo = echo

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.send(transport)

    def send(self, transport: WSTransport) -> None:
        self.echo.sending()
        transport.send(WSMsgType.TEXT, _ECHO_BYTES)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        message = _payload(frame)
        if message is None or self.done.done():
            return
        if self.echo.reply(message):
            self.finish()
        else:
            self.send(transport)


async def _run(url: str, listener: _Listener) -> None:
    transport, _ = await ws_connect(lambda: listener, url, max_frame_size=MAX_MESSAGE_SIZE)
    try:
        await listener.done
    finally:
        transport.send_close(WSCloseCode.OK)
        transport.disconnect()
        await transport.wait_disconnected()


class Picows:
    async def stream(self, url: str, plan: StreamPlan) -> Count:
        counter = CallbackCounter(plan)
        await _run(url, _StreamListener(counter))
        assert counter.result is not None
        return counter.result

    async def echo(self, url: str, plan: EchoPlan) -> Echo:
        echo = CallbackEcho(plan)
        await _run(url, _EchoListener(echo))
        return echo.result


def make(variant: str) -> Client:
    return Picows()
