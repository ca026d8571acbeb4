"""A scripted exchange on top of the test server: the venue behaviours real feeds have.

:func:`open_venue` wraps a :class:`WebSocketTestServer` and answers its clients the way a venue
does, so that code written against the manager's exchange options can be tested offline::

    async with open_test_server(echo=False) as server, open_venue(server, "binance") as venue:
        venue.reject("nosuch@trade", code=2, reason="Invalid symbol")
        venue.limit_rate(5)                           # more than 5 messages a second: close 1008
        async with open_managed_websocket(
            server.url, subscription_protocol=BinanceSubscriptions()
        ) as ws:
            await ws.subscribe("btcusdt@trade")       # acknowledged by the venue
            await venue.publish("btcusdt@trade", {"e": "trade", "p": "1"})

What it models (each optional):

- **Subscriptions** in a dialect: ``"generic"`` (``{"type": "subscribe", "channel": c}``, no
  answer), ``"binance"`` (answers by id, ``{"error": ..}`` for a refusal), ``"okx"`` (one
  ``{"event": "subscribe", "arg": ..}`` per channel, an anonymous ``{"event": "error"}``),
  ``"bybit"`` (``{"success": .., "req_id": ..}``), ``"kucoin"`` (``{"type": "subscribe",
  "topic": "/market/ticker:A,B", "id": ..}`` → ``{"type": "ack", "id": ..}``), ``"htx"``
  (``{"sub": topic, "id": ..}`` → ``{"status": "ok", "subbed": topic, "id": ..}``). Refusals by channel (:meth:`Venue.reject`) or
  beyond ``max_subscriptions`` per connection; :meth:`Venue.hold_answers` delays or withholds
  answers. :meth:`Venue.publish` sends to a channel's subscribers.
- **Required heartbeats**: :meth:`Venue.require_heartbeat` answers the client's application
  ping and closes a connection that sent none within a time (OKX, Bybit, KuCoin).
- **Server pings**: :meth:`Venue.ping_clients` pings clients with a message (HTX) and closes
  one that left ``max_unanswered`` in a row unanswered.
- **A message rate**: :meth:`Venue.limit_rate` closes with 1008 above it (Binance).
- **Fresh tokens only**: :meth:`Venue.require_token` refuses an upgrade with 401 when the check
  fails (a stale listen key or token).
- **Silence**: :meth:`Venue.mute` stops everything the venue sends to a client (data, answers,
  pings) while the server still answers its WebSocket pings: a feed that looks alive.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from anyio.abc import TaskGroup

from ._records import ClientRecord
from ._server import WebSocketTestServer

__all__ = ["Dialect", "Venue", "open_venue"]

Dialect = Literal["generic", "binance", "okx", "bybit", "kucoin", "htx"]

_DIALECTS = ("generic", "binance", "okx", "bybit", "kucoin", "htx")


@asynccontextmanager
async def open_venue(
    server: WebSocketTestServer,
    dialect: Dialect = "generic",
    *,
    max_subscriptions: int | None = None,
    encode: Callable[[Any], str | bytes] | None = None,
) -> AsyncIterator[Venue]:
    """Make ``server`` behave like a venue speaking ``dialect`` while the block runs.

    It installs the server's ``on_handshake``, ``on_message`` and ``authorize`` hooks (and
    removes them after). ``max_subscriptions``: channels one connection may hold; a request
    beyond it is refused as the dialect refuses. ``encode``: how the venue turns what it sends
    into a frame (default: JSON text for a dict or list; HTX, say, sends gzip-compressed binary).
    """
    if dialect not in _DIALECTS:
        raise ValueError(f"dialect must be one of {', '.join(_DIALECTS)}, not {dialect!r}")
    group = anyio.create_task_group()
    await group.__aenter__()
    venue = Venue(server, dialect, max_subscriptions, group, encode or _encode)
    server.on_handshake(venue._greet)
    server.on_message(venue._on_message)
    try:
        yield venue
    finally:
        server.on_handshake(None)
        server.on_message(None)
        server.authorize(None)
        # The block's own exception is not handed to the group: a failing assertion comes out
        # as itself, not wrapped in an ExceptionGroup.
        group.cancel_scope.cancel()
        await group.__aexit__(None, None, None)


@dataclass
class _Client:
    """What the venue knows about one connection."""

    record: ClientRecord
    channels: dict[str, None] = field(default_factory=dict)  # in subscription order
    sent_at: list[float] = field(default_factory=list)  # for the rate limit
    heartbeat_at: float = 0.0
    unanswered: int = 0
    muted: bool = False


@dataclass(frozen=True)
class _Heartbeat:
    within: float
    is_ping: Callable[[Any], bool]
    reply: Callable[[Any], Any] | None
    any_message: bool
    code: int


@dataclass(frozen=True)
class _ServerPings:
    every: float
    ping: Callable[[], Any]
    is_pong: Callable[[Any], bool]
    max_unanswered: int
    code: int


class Venue:
    """The venue behaviours of one test server; made by :func:`open_venue`."""

    def __init__(
        self,
        server: WebSocketTestServer,
        dialect: Dialect,
        max_subscriptions: int | None,
        group: TaskGroup,
        encode: Callable[[Any], str | bytes],
    ) -> None:
        self.server = server
        self._encode = encode
        self.dialect = dialect
        self.max_subscriptions = max_subscriptions
        self._group = group
        self._clients: dict[int, _Client] = {}
        self._rejected: dict[str, tuple[int | str, str]] = {}
        self._answer_delay: float | None = 0.0  # None: withhold answers
        self._rate: tuple[int, float] | None = None
        self._rate_code = 1008
        self._heartbeat: _Heartbeat | None = None
        self._pings: _ServerPings | None = None
        #: Every subscription request the venue refused: (client index, channel, code).
        self.refusals: list[tuple[int, str, int | str]] = []
        #: Client application pings the venue answered (require_heartbeat).
        self.heartbeats_received: int = 0
        #: Answers to the venue's own pings (ping_clients).
        self.pongs_received: int = 0

    # -- Configuration ------------------------------------------------------------------------

    def reject(self, channel: str, *, code: int | str = 2, reason: str = "Invalid request") -> None:
        """Refuse subscriptions to ``channel`` with the dialect's error (``code``, ``reason``)."""
        self._rejected[channel] = (code, reason)

    def hold_answers(self, delay: float | None) -> None:
        """Answer subscription requests after ``delay`` seconds, or never (None); 0 = at once."""
        self._answer_delay = delay

    def limit_rate(self, count: int, per: float = 1.0, *, code: int = 1008) -> None:
        """Close a connection (``code``) that sends more than ``count`` messages in ``per`` s."""
        self._rate = (count, per)
        self._rate_code = code

    def require_heartbeat(
        self,
        within: float,
        is_ping: Callable[[Any], bool] = lambda m: m == "ping",
        reply: Callable[[Any], Any] | None = lambda m: "pong",
        *,
        any_message: bool = False,
        code: int = 4000,
    ) -> None:
        """Close (``code``) a connection that sent no application ping for ``within`` s.

        ``is_ping`` recognises the client's ping (a decoded JSON object or the raw text);
        ``reply(ping)`` is the answer (None: no answer). ``any_message``: any message counts,
        as OKX has it."""
        self._heartbeat = _Heartbeat(within, is_ping, reply, any_message, code)
        now = anyio.current_time()
        for client in self._clients.values():
            client.heartbeat_at = now
            self._group.start_soon(self._watch_heartbeat, client)

    def ping_clients(
        self,
        every: float,
        ping: Callable[[], Any] = lambda: {"ping": int(time.time() * 1000)},
        is_pong: Callable[[Any], bool] = lambda m: isinstance(m, dict) and "pong" in m,
        *,
        max_unanswered: int = 2,
        code: int = 4000,
    ) -> None:
        """Ping every client with ``ping()`` every ``every`` s, as HTX does; close (``code``)
        one that left ``max_unanswered`` pings in a row unanswered."""
        self._pings = _ServerPings(every, ping, is_pong, max_unanswered, code)
        for client in self._clients.values():
            self._group.start_soon(self._ping, client)

    def require_token(self, is_fresh: Callable[[ClientRecord], bool]) -> None:
        """Refuse an upgrade with HTTP 401 unless ``is_fresh(record)`` (its path and headers
        are set): a stale listen key, an expired token."""
        self.server.authorize(lambda record: True if is_fresh(record) else 401)

    def mute(self, client: ClientRecord | None = None) -> None:
        """Stop sending anything to ``client`` (None: every client) while the server still
        answers WebSocket pings: a connection that looks alive and carries nothing."""
        for state in self._targets(client):
            state.muted = True

    def unmute(self, client: ClientRecord | None = None) -> None:
        for state in self._targets(client):
            state.muted = False

    # -- What the venue saw -------------------------------------------------------------------

    def subscriptions(self, client: ClientRecord) -> tuple[str, ...]:
        """The channels ``client`` holds, in the order it subscribed."""
        state = self._clients.get(client.index)
        return tuple(state.channels) if state is not None else ()

    async def publish(self, channel: str, data: Any) -> int:
        """Send ``data`` (JSON for a dict or list) to every live, unmuted subscriber of
        ``channel``; return how many got it."""
        sent = 0
        for state in list(self._clients.values()):
            if channel in state.channels and not state.muted and not state.record.closed:
                sent += await self.server.send(state.record, self._encode(data))
        return sent

    # -- Hooks ----------------------------------------------------------------------------------

    def _greet(self, record: ClientRecord) -> None:
        client = _Client(record, heartbeat_at=anyio.current_time())
        self._clients[record.index] = client
        if self._heartbeat is not None:
            self._group.start_soon(self._watch_heartbeat, client)
        if self._pings is not None:
            self._group.start_soon(self._ping, client)

    async def _on_message(self, record: ClientRecord, raw: str | bytes) -> None:
        client = self._clients.get(record.index)
        if client is None:
            return
        if self._rate is not None and await self._over_rate(client):
            return
        message = _decode(raw)
        heartbeat = self._heartbeat
        if heartbeat is not None:
            if heartbeat.any_message:
                client.heartbeat_at = anyio.current_time()
            if _safe(heartbeat.is_ping, message):
                client.heartbeat_at = anyio.current_time()
                self.heartbeats_received += 1
                if heartbeat.reply is not None:
                    await self._send(client, heartbeat.reply(message))
                return
        if self._pings is not None and _safe(self._pings.is_pong, message):
            client.unanswered = 0
            self.pongs_received += 1
            return
        if isinstance(message, dict):
            await self._subscription(client, message)

    # -- Subscriptions --------------------------------------------------------------------------

    async def _subscription(self, client: _Client, request: Mapping[str, Any]) -> None:
        parsed = _parse_request(self.dialect, request)
        if parsed is None:
            return
        subscribe, channels, request_id = parsed
        refused = None
        if subscribe:
            refused = next(((c, *self._rejected[c]) for c in channels if c in self._rejected), None)
            new = [c for c in channels if c not in client.channels]
            limit = self.max_subscriptions
            if refused is None and limit is not None and len(client.channels) + len(new) > limit:
                refused = (new[0], 4, f"too many subscriptions: at most {limit} per connection")
        if refused is not None:
            self.refusals.append((client.record.index, refused[0], refused[1]))
        elif subscribe:
            client.channels.update(dict.fromkeys(channels))
        else:
            for channel in channels:
                client.channels.pop(channel, None)
        answers = _answers(self.dialect, request, channels, request_id, refused)
        if not answers:
            return
        delay = self._answer_delay
        if delay is None:
            return
        if delay:
            self._group.start_soon(self._answer_later, client, answers, delay)
        else:
            for answer in answers:
                await self._send(client, answer)

    async def _answer_later(self, client: _Client, answers: list[Any], delay: float) -> None:
        await anyio.sleep(delay)
        for answer in answers:
            await self._send(client, answer)

    # -- Timers and limits ----------------------------------------------------------------------

    async def _over_rate(self, client: _Client) -> bool:
        assert self._rate is not None
        count, per = self._rate
        now = anyio.current_time()
        client.sent_at = [t for t in client.sent_at if t > now - per]
        client.sent_at.append(now)
        if len(client.sent_at) <= count:
            return False
        reason = f"too many messages: more than {count} in {per:g} s"
        # Closed from another task: this hook runs in the client's read loop, which must go on
        # reading to see the client's answer to the close frame.
        self._group.start_soon(self.server.close_clients, self._rate_code, reason, client.record)
        return True

    async def _watch_heartbeat(self, client: _Client) -> None:
        heartbeat = self._heartbeat
        assert heartbeat is not None
        while not client.record.closed:
            deadline = client.heartbeat_at + heartbeat.within
            if anyio.current_time() >= deadline:
                reason = f"no ping within {heartbeat.within:g} s"
                await self.server.close_clients(heartbeat.code, reason, client.record)
                return
            await anyio.sleep_until(deadline)

    async def _ping(self, client: _Client) -> None:
        pings = self._pings
        assert pings is not None
        while not client.record.closed:
            await anyio.sleep(pings.every)
            if client.unanswered >= pings.max_unanswered:
                reason = f"{client.unanswered} pings unanswered"
                await self.server.close_clients(pings.code, reason, client.record)
                return
            if not client.muted:
                client.unanswered += 1
                await self._send(client, pings.ping())

    async def _send(self, client: _Client, data: Any) -> None:
        if not client.muted:
            await self.server.send(client.record, self._encode(data))

    def _targets(self, client: ClientRecord | None) -> list[_Client]:
        if client is None:
            return list(self._clients.values())
        state = self._clients.get(client.index)
        return [state] if state is not None else []


def _decode(raw: str | bytes) -> Any:
    if isinstance(raw, str) and raw[:1] in ("{", "["):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _encode(data: Any) -> str | bytes:
    if isinstance(data, str | bytes):
        return data
    return json.dumps(data, separators=(",", ":"))


def _safe(predicate: Callable[[Any], bool], message: Any) -> bool:
    try:
        return bool(predicate(message))
    except Exception:  # noqa: BLE001 - a predicate written for another message shape
        return False


def _parse_request(
    dialect: Dialect, request: Mapping[str, Any]
) -> tuple[bool, list[str], Any] | None:
    """(subscribe?, channels, request id) of a subscription request, or None."""
    if dialect == "binance":
        method = request.get("method")
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            return method == "SUBSCRIBE", list(request.get("params", [])), request.get("id")
    elif dialect == "okx":
        op = request.get("op")
        if op in ("subscribe", "unsubscribe"):
            args = request.get("args", [])
            return op == "subscribe", [_okx_channel(a) for a in args], request.get("id")
    elif dialect == "bybit":
        op = request.get("op")
        if op in ("subscribe", "unsubscribe"):
            return op == "subscribe", list(request.get("args", [])), request.get("req_id")
    elif dialect == "kucoin":
        kind = request.get("type")
        topic = request.get("topic")
        if kind in ("subscribe", "unsubscribe") and isinstance(topic, str):
            prefix, _, symbols = topic.partition(":")
            channels = [f"{prefix}:{s}" for s in symbols.split(",")] if symbols else [prefix]
            return kind == "subscribe", channels, request.get("id")
    elif dialect == "htx":
        for key, subscribe in (("sub", True), ("unsub", False)):
            if isinstance(request.get(key), str):
                return subscribe, [request[key]], request.get("id")
    else:
        kind = request.get("type")
        if kind in ("subscribe", "unsubscribe") and isinstance(request.get("channel"), str):
            return kind == "subscribe", [request["channel"]], None
    return None


def _okx_channel(arg: Any) -> str:
    if not isinstance(arg, dict):
        return str(arg)
    inst_id = arg.get("instId")
    return f"{arg.get('channel')}:{inst_id}" if inst_id else str(arg.get("channel"))


def _okx_arg(channel: str) -> dict[str, str]:
    name, _, inst_id = channel.partition(":")
    return {"channel": name, "instId": inst_id} if inst_id else {"channel": name}


def _answers(
    dialect: Dialect,
    request: Mapping[str, Any],
    channels: list[str],
    request_id: Any,
    refused: tuple[str, int | str, str] | None,
) -> list[Any]:
    """What the venue sends back for a subscription request."""
    if dialect == "binance":
        if refused is not None:
            _, code, reason = refused
            return [{"error": {"code": code, "msg": reason}, "id": request_id}]
        return [{"result": None, "id": request_id}]
    if dialect == "okx":
        if refused is not None:
            _, code, reason = refused
            return [{"event": "error", "code": str(code), "msg": reason, "connId": "venue"}]
        event = request.get("op")
        return [{"event": event, "arg": _okx_arg(c), "connId": "venue"} for c in channels]
    if dialect == "bybit":
        op = request.get("op")
        if refused is not None:
            return [
                {"success": False, "ret_msg": f"error:{refused[2]}", "req_id": request_id, "op": op}
            ]
        return [
            {"success": True, "ret_msg": "", "conn_id": "venue", "req_id": request_id, "op": op}
        ]
    if dialect == "kucoin":
        if refused is not None:
            _, code, reason = refused
            return [{"id": request_id, "type": "error", "code": code, "data": reason}]
        return [{"id": request_id, "type": "ack"}] if request.get("response") else []
    if dialect == "htx":
        key = "subbed" if "sub" in request else "unsubbed"
        if refused is not None:
            _, code, reason = refused
            return [{"id": request_id, "status": "error", "err-code": code, "err-msg": reason}]
        topic = request.get("sub", request.get("unsub"))
        return [{"id": request_id, "status": "ok", key: topic, "ts": int(time.time() * 1000)}]
    return []
