"""A tiny fake exchange on top of ``managed_websocket.testing``, for the docs examples.

It speaks the default subscription protocol of the manager, so the examples need no options to
talk to it:

- ``{"type": "subscribe", "channel": c}`` → ``{"type": "subscribed", "channel": c}``, then a trade
  ``{"type": "trade", "channel": c, "seq": n, "price": p}`` every ``tick`` seconds. ``seq`` counts
  per channel across connections, so trades published while a client was away show up as a gap.
- ``{"type": "unsubscribe", "channel": c}`` → ``{"type": "unsubscribed", "channel": c}``.
- ``{"type": "login", ...}`` → ``{"type": "login_ok"}``.
- ``{"type": "order", "id": i}`` → ``{"type": "ack", "id": i}`` after ``ack_delay`` seconds.
- ``{"type": "snapshot", "channel": c}`` → ``{"type": "snapshot", "channel": c, "seq": n}``.
- binary frames are echoed.

Faults come from the test server underneath: ``exchange.server.drop_clients()`` and so on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from managed_websocket.testing import ClientRecord, WebSocketTestServer, open_test_server

__all__ = ["WAIT", "Exchange", "open_exchange", "wait_until"]

#: Upper bound for every wait in the docs tests; each normally takes milliseconds.
WAIT = 10.0


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` (for conditions nothing signals), at most :data:`WAIT` seconds."""
    with anyio.fail_after(WAIT):
        while not predicate():  # noqa: ASYNC110 - nothing signals these conditions
            await anyio.sleep(0.005)


class Exchange:
    def __init__(self, server: WebSocketTestServer, tick: float) -> None:
        self.server = server
        self.tick = tick
        self.paused = False
        self.ack_delay = 0.0  # how long an order waits for its acknowledgement
        self.seq: dict[str, int] = {}
        self._channels: dict[int, dict[str, None]] = {}  # client index → channels, in order
        self._read: dict[int, int] = {}  # client index → messages already answered

    @property
    def url(self) -> str:
        return self.server.url

    def channels(self, client: ClientRecord) -> list[str]:
        return list(self._channels.get(client.index, {}))

    async def wait_for_subscribers(self, channel: str, n: int = 1) -> None:
        """Wait until ``n`` connections in total have subscribed to ``channel``."""
        await wait_until(lambda: sum(channel in c for c in self._channels.values()) >= n)

    async def publish(self, channel: str, count: int = 1) -> None:
        """Send ``count`` trades on ``channel`` to every live subscriber, at once."""
        for _ in range(count):
            seq = self.seq[channel] = self.seq.get(channel, 0) + 1
            trade = json.dumps(
                {"type": "trade", "channel": channel, "seq": seq, "price": 100 + seq}
            )
            for client in self.server.live_clients:
                if channel in self._channels.get(client.index, {}):
                    await self.server.send(client, trade)

    async def burst(self, channel: str, count: int) -> None:
        """Publish ``count`` trades in one socket write per subscriber: one read for the client."""
        frames = bytearray()
        for _ in range(count):
            seq = self.seq[channel] = self.seq.get(channel, 0) + 1
            trade = {"type": "trade", "channel": channel, "seq": seq, "price": 100 + seq}
            frames += _text_frame(json.dumps(trade))
        for client in self.server.live_clients:
            if channel in self._channels.get(client.index, {}):
                await self.server.send_raw(bytes(frames), client)

    async def _answer_requests(self) -> None:
        answered = 0
        while True:
            await self.server.wait_for_messages(answered + 1)
            for client in self.server.clients:
                # Messages may arrive while we answer: count each one as it is taken.
                while self._read.get(client.index, 0) < len(client.messages):
                    message = client.messages[self._read.get(client.index, 0)]
                    self._read[client.index] = self._read.get(client.index, 0) + 1
                    answered += 1
                    await self._answer(client, message)

    async def _answer(self, client: ClientRecord, message: str | bytes) -> None:
        if isinstance(message, bytes):
            await self.server.send(client, message)
            return
        request: dict[str, Any] = json.loads(message)
        kind, channel = request.get("type"), request.get("channel", "")
        channels = self._channels.setdefault(client.index, {})
        if kind == "subscribe":
            await self._reply(client, type="subscribed", channel=channel)
            channels[channel] = None  # after the reply: wait_for_subscribers() implies it
        elif kind == "unsubscribe":
            channels.pop(channel, None)
            await self._reply(client, type="unsubscribed", channel=channel)
        elif kind == "login":
            await self._reply(client, type="login_ok")
        elif kind == "order":
            await anyio.sleep(self.ack_delay)
            await self._reply(client, type="ack", id=request.get("id"))
        elif kind == "snapshot":
            await self._reply(
                client, type="snapshot", channel=channel, seq=self.seq.get(channel, 0)
            )

    async def _reply(self, client: ClientRecord, **fields: object) -> None:
        await self.server.send(client, json.dumps(fields))

    async def _run_ticker(self) -> None:
        while True:
            await anyio.sleep(self.tick)
            if self.paused:
                continue
            subscribed = {c for chans in self._channels.values() for c in chans}
            for channel in sorted(subscribed):
                await self.publish(channel)


def _text_frame(text: str) -> bytes:
    """One unmasked server-to-client text frame (RFC 6455 section 5.2)."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes([0x81, size])
    elif size < 65536:
        header = bytes([0x81, 126]) + size.to_bytes(2, "big")
    else:
        header = bytes([0x81, 127]) + size.to_bytes(8, "big")
    return header + payload


@asynccontextmanager
async def open_exchange(*, tick: float = 0.005, **server_options: Any) -> AsyncIterator[Exchange]:
    """Run a fake exchange (trades every ``tick`` seconds) for the duration of the block."""
    async with (
        open_test_server(echo=False, **server_options) as server,
        anyio.create_task_group() as tg,
    ):
        exchange = Exchange(server, tick)
        tg.start_soon(exchange._answer_requests)
        tg.start_soon(exchange._run_ticker)
        yield exchange
        tg.cancel_scope.cancel()
