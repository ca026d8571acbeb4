"""A local venue for the pool tests: the package's test server, scripted like an exchange that
caps what one connection may carry and how fast connections may be opened.

- ``{"type": "subscribe", "channel": c}`` → ``{"type": "subscribed", "channel": c}``, or, past
  ``per_connection`` channels on that connection, ``{"type": "error", "channel": c, "code":
  "too_many_subscriptions"}`` (and the channel is not subscribed).
- ``{"type": "unsubscribe", "channel": c}`` → ``{"type": "unsubscribed", "channel": c}``.
- An upgrade request that would make more than ``rate[0]`` within ``rate[1]`` seconds (counted
  from the previous accepted ones, on the server's clock) is refused with HTTP 429.

``publish(channel, payload)`` sends ``{"type": "data", "channel": c, ...}`` to the connection that
subscribed ``c`` (each channel lives on one connection in a pool).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from managed_websocket.testing import ClientRecord, WebSocketTestServer, open_test_server

__all__ = ["WAIT", "Venue", "dial_recorder", "max_in_window", "open_venue", "wait_until"]

#: Upper bound for every wait; each normally takes milliseconds.
WAIT = 20.0


async def wait_until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``predicate`` for conditions nothing signals, at most ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - nothing signals these conditions
            await anyio.sleep(0.005)


def max_in_window(times: list[float], seconds: float) -> int:
    """The most ``times`` that fall within any half-open window of ``seconds``."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


def dial_recorder(url: str, times: list[float]) -> Callable[[], str]:
    """A URL provider that records when each dial was let through (on the event loop's clock)."""

    def provide() -> str:
        times.append(anyio.current_time())
        return url

    return provide


class Venue:
    def __init__(
        self, server: WebSocketTestServer, per_connection: int, rate: tuple[int, float] | None
    ) -> None:
        self.server = server
        self.per_connection = per_connection
        self.rate = rate
        self.channels: dict[int, dict[str, None]] = {}  # client index -> subscribed channels
        self.owner: dict[str, ClientRecord] = {}
        self.rejected: list[tuple[int, str]] = []  # (client, channel) refused over the cap
        self.accepted_at: deque[float] = deque()
        self.rate_refusals = 0
        self.most_per_connection = 0
        self.acks = 0

    @property
    def url(self) -> str:
        return self.server.url

    def channels_of(self, client: ClientRecord) -> list[str]:
        return list(self.channels.get(client.index, {}))

    def subscribed(self) -> int:
        return sum(len(chans) for chans in self.channels.values())

    def live_subscribed(self) -> int:
        return sum(len(self.channels.get(c.index, {})) for c in self.server.live_clients)

    def authorize(self, record: ClientRecord) -> bool | int:
        if self.rate is None:
            return True
        count, seconds = self.rate
        now = anyio.current_time()
        while self.accepted_at and self.accepted_at[0] <= now - seconds:
            self.accepted_at.popleft()
        if len(self.accepted_at) >= count:
            self.rate_refusals += 1
            return 429
        self.accepted_at.append(now)
        return True

    async def on_message(self, record: ClientRecord, message: str | bytes) -> None:
        request: dict[str, Any] = json.loads(message)
        kind, channel = request.get("type"), request.get("channel", "")
        chans = self.channels.setdefault(record.index, {})
        if kind == "subscribe":
            if channel not in chans and len(chans) >= self.per_connection:
                self.rejected.append((record.index, channel))
                await self._reply(
                    record, type="error", channel=channel, code="too_many_subscriptions"
                )
                return
            chans[channel] = None
            self.owner[channel] = record
            self.most_per_connection = max(self.most_per_connection, len(chans))
            self.acks += 1
            await self._reply(record, type="subscribed", channel=channel)
        elif kind == "unsubscribe":
            chans.pop(channel, None)
            await self._reply(record, type="unsubscribed", channel=channel)

    async def publish(self, channel: str, **fields: Any) -> bool:
        """Send a data message on ``channel`` to the live connection subscribed to it."""
        record = self.owner.get(channel)
        if record is None or record.closed or channel not in self.channels.get(record.index, {}):
            raise AssertionError(f"nobody is subscribed to {channel!r}")
        return await self.server.send(
            record, json.dumps({"type": "data", "channel": channel, **fields})
        )

    async def publish_if_subscribed(self, channel: str, **fields: Any) -> bool:
        """:meth:`publish`, or False when no live connection is subscribed to ``channel``."""
        record = self.owner.get(channel)
        if record is None or record.closed or channel not in self.channels.get(record.index, {}):
            return False
        return await self.publish(channel, **fields)

    async def _reply(self, record: ClientRecord, **fields: object) -> None:
        await self.server.send(record, json.dumps(fields))


@asynccontextmanager
async def open_venue(
    *, per_connection: int, rate: tuple[int, float] | None = None
) -> AsyncIterator[Venue]:
    async with open_test_server(echo=False) as server:
        venue = Venue(server, per_connection, rate)
        server.on_message(venue.on_message)
        server.authorize(venue.authorize)
        yield venue
