"""Subscription protocols: how channels become requests, and how the server's answers read.

Pure, no I/O. A protocol object does three things for the manager, which does the rest (ids,
batching, rate, waiting for answers, replay; see ``_manager/_acks.py``):

- :meth:`SubscriptionProtocol.subscribe_request` / :meth:`~SubscriptionProtocol.unsubscribe_request`
  build one request for a batch of channels and a request id;
- :meth:`SubscriptionProtocol.parse_reply` recognises the server's acknowledgements and errors;
- its attributes say what the venue allows: channels per request, characters per request, its
  message rate, its channels per connection.

Subclass :class:`SubscriptionProtocol` for another venue. A plain object with
``subscribe_message(channel)`` and ``unsubscribe_message(channel)`` still works (one channel per
request, no acknowledgements): :func:`as_protocol` wraps it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ._messages import encode_outgoing

__all__ = [
    "BinanceSubscriptions",
    "BybitSubscriptions",
    "GenericSubscriptions",
    "OkxSubscriptions",
    "SubscriptionProtocol",
    "SubscriptionReply",
    "as_protocol",
    "plan_requests",
]

#: The id used to measure a request's length before the real id is known: as long as any.
_WIDEST_ID = 2**53


@dataclass(frozen=True, slots=True)
class SubscriptionReply:
    """The server's answer to a subscription request.

    ``request_id`` names the request it answers; None when the venue does not echo ids: then
    ``channels`` (the channels it acknowledges, as OKX does one by one) or, failing those, the
    oldest request still waiting is matched. ``ok`` False is a refusal with the venue's ``code``
    and ``reason``.
    """

    ok: bool
    request_id: int | None = None
    channels: tuple[str, ...] = ()
    code: int | str | None = None
    reason: str = ""


class SubscriptionProtocol:
    """Base class of subscription protocols; subclass it for a venue.

    Override :meth:`subscribe_request` and :meth:`unsubscribe_request` to put several channels
    and a request id in one message (set :attr:`max_per_message`), and :meth:`parse_reply` with
    :attr:`acknowledged` True to have ``subscribe()`` wait for the server's answer. Or override
    only :meth:`subscribe_message` / :meth:`unsubscribe_message` for one channel per message.
    """

    #: Channels per request.
    max_per_message: ClassVar[int] = 1
    #: Characters per request (as sent, JSON-encoded), or None for no limit.
    max_message_chars: ClassVar[int | None] = None
    #: Whether the server answers each request (then ``subscribe()`` waits for the answer).
    acknowledged: ClassVar[bool] = False
    #: The venue's limit on messages we send per second, used unless ``send_rate_limit`` is set.
    send_rate_limit: float | None = None
    #: The venue's limit on channels per connection, used unless ``max_subscriptions`` is set.
    max_subscriptions: int | None = None

    def subscribe_message(self, channel: str) -> object:
        raise NotImplementedError(f"{type(self).__name__} must override subscribe_request()")

    def unsubscribe_message(self, channel: str) -> object:
        raise NotImplementedError(f"{type(self).__name__} must override unsubscribe_request()")

    def subscribe_request(self, channels: Sequence[str], request_id: int) -> object:
        """The message that subscribes to ``channels`` (at most :attr:`max_per_message`)."""
        return self.subscribe_message(channels[0])

    def unsubscribe_request(self, channels: Sequence[str], request_id: int) -> object:
        """The message that unsubscribes from ``channels``."""
        return self.unsubscribe_message(channels[0])

    def parse_reply(self, message: Any) -> SubscriptionReply | None:
        """The answer ``message`` carries, or None if it is not one (then it is delivered).

        ``message`` is what ``decode`` made of the frame: a dict for JSON objects by default, or
        the raw str with ``decode=None`` (see :func:`json_object`)."""
        return None


def json_object(message: Any) -> dict[str, Any] | None:
    """``message`` as a JSON object: itself if it is a dict, parsed if it is text of one."""
    if isinstance(message, dict):
        return message
    if isinstance(message, str) and message[:1] == "{":
        try:
            parsed = json.loads(message)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


@dataclass(frozen=True, slots=True)  # stateless: all instances are equal, so Settings compare
class GenericSubscriptions(SubscriptionProtocol):
    """The default: ``{"type": "subscribe", "channel": c}`` and ``"unsubscribe"``, one channel
    per message, no acknowledgements (``subscribe()`` returns once it is sent)."""

    def subscribe_message(self, channel: str) -> dict[str, str]:
        return {"type": "subscribe", "channel": channel}

    def unsubscribe_message(self, channel: str) -> dict[str, str]:
        return {"type": "unsubscribe", "channel": channel}


@dataclass(frozen=True, slots=True)
class BinanceSubscriptions(SubscriptionProtocol):
    """Binance spot and futures streams: ``{"method": "SUBSCRIBE", "params": [..], "id": n}``.

    Answers: ``{"result": null, "id": n}``; errors ``{"error": {"code": 2, "msg": ..}, "id": n}``,
    or the older ``{"code": 2, "msg": ..}`` without an id (matched to the oldest request). The
    venue closes a connection that sends more than 5 messages a second (1008; its count includes
    our pong frames, hence a default of 4), allows 1,024 streams per connection (200 on futures
    and options: pass ``max_subscriptions``) and drops requests much over 8,000 characters.
    """

    send_rate_limit: float | None = 4.0
    max_subscriptions: int | None = 1024
    max_per_message: ClassVar[int] = 200
    max_message_chars: ClassVar[int | None] = 4000
    acknowledged: ClassVar[bool] = True

    def subscribe_request(self, channels: Sequence[str], request_id: int) -> object:
        return {"method": "SUBSCRIBE", "params": list(channels), "id": request_id}

    def unsubscribe_request(self, channels: Sequence[str], request_id: int) -> object:
        return {"method": "UNSUBSCRIBE", "params": list(channels), "id": request_id}

    def parse_reply(self, message: Any) -> SubscriptionReply | None:
        obj = json_object(message)
        if obj is None:
            return None
        request_id = obj.get("id")
        if not (request_id is None or isinstance(request_id, int)):
            return None
        if "result" in obj and request_id is not None and len(obj) == 2:
            return SubscriptionReply(ok=obj["result"] is None, request_id=request_id)
        error = obj.get("error")
        if isinstance(error, dict) and request_id is not None:
            return SubscriptionReply(
                ok=False, request_id=request_id, code=error.get("code"), reason=_text(error)
            )
        if request_id is None and set(obj) == {"code", "msg"}:
            return SubscriptionReply(ok=False, code=obj["code"], reason=_text(obj))
        return None


@dataclass(frozen=True, slots=True)
class OkxSubscriptions(SubscriptionProtocol):
    """OKX v5: ``{"op": "subscribe", "args": [{"channel": "tickers", "instId": "BTC-USDT"}]}``.

    A channel is written ``"tickers:BTC-USDT"`` (``channel:instId``; a bare ``"account"`` has no
    instId). The server acknowledges each argument on its own,
    ``{"event": "subscribe", "arg": {..}}``, and refuses a request with
    ``{"event": "error", "code": "60012", "msg": ..}``, which names no request: it is matched to
    the oldest one waiting. OKX allows 480 requests an hour per connection and 64 KiB per
    request; it wants a text ``ping`` when nothing was received for 30 s (see ``Heartbeat``).
    """

    max_per_message: ClassVar[int] = 100
    max_message_chars: ClassVar[int | None] = 4096
    acknowledged: ClassVar[bool] = True

    def subscribe_request(self, channels: Sequence[str], request_id: int) -> object:
        return {"op": "subscribe", "args": [okx_arg(c) for c in channels]}

    def unsubscribe_request(self, channels: Sequence[str], request_id: int) -> object:
        return {"op": "unsubscribe", "args": [okx_arg(c) for c in channels]}

    def parse_reply(self, message: Any) -> SubscriptionReply | None:
        obj = json_object(message)
        if obj is None:
            return None
        event = obj.get("event")
        if event in ("subscribe", "unsubscribe"):
            arg = obj.get("arg")
            if not isinstance(arg, dict):
                return None
            return SubscriptionReply(ok=True, channels=(okx_channel(arg),))
        if event == "error":
            return SubscriptionReply(ok=False, code=obj.get("code"), reason=_text(obj))
        return None


def okx_arg(channel: str) -> dict[str, str]:
    """``"tickers:BTC-USDT"`` → ``{"channel": "tickers", "instId": "BTC-USDT"}``."""
    name, _, inst_id = channel.partition(":")
    return {"channel": name, "instId": inst_id} if inst_id else {"channel": name}


def okx_channel(arg: dict[str, Any]) -> str:
    """The inverse of :func:`okx_arg`."""
    name = str(arg.get("channel", ""))
    inst_id = arg.get("instId")
    return f"{name}:{inst_id}" if inst_id else name


@dataclass(frozen=True, slots=True)
class BybitSubscriptions(SubscriptionProtocol):
    """Bybit v5: ``{"op": "subscribe", "args": [..], "req_id": "n"}`` →
    ``{"success": true, "op": "subscribe", "req_id": "n", ..}``; a refusal has ``"success":
    false`` and the reason in ``ret_msg``. Spot allows 10 args per request, and the args of one
    request may not exceed 21,000 characters; Bybit wants ``{"op": "ping"}`` every 20 s (see
    ``Heartbeat``)."""

    max_per_message: ClassVar[int] = 10
    max_message_chars: ClassVar[int | None] = 21000
    acknowledged: ClassVar[bool] = True

    def subscribe_request(self, channels: Sequence[str], request_id: int) -> object:
        return {"op": "subscribe", "args": list(channels), "req_id": str(request_id)}

    def unsubscribe_request(self, channels: Sequence[str], request_id: int) -> object:
        return {"op": "unsubscribe", "args": list(channels), "req_id": str(request_id)}

    def parse_reply(self, message: Any) -> SubscriptionReply | None:
        obj = json_object(message)
        if obj is None or obj.get("op") not in ("subscribe", "unsubscribe"):
            return None
        success = obj.get("success")
        if not isinstance(success, bool):
            return None
        req_id = obj.get("req_id")
        request_id = int(req_id) if isinstance(req_id, str) and req_id.isdigit() else None
        reason = "" if success else str(obj.get("ret_msg", ""))
        return SubscriptionReply(ok=success, request_id=request_id, reason=reason)


def _text(obj: dict[str, Any]) -> str:
    return str(obj.get("msg", ""))


@dataclass(frozen=True, slots=True)
class _PerChannel(SubscriptionProtocol):
    """A plain object with ``subscribe_message(channel)`` and ``unsubscribe_message(channel)``."""

    inner: Any

    def subscribe_message(self, channel: str) -> object:
        return self.inner.subscribe_message(channel)

    def unsubscribe_message(self, channel: str) -> object:
        return self.inner.unsubscribe_message(channel)


def as_protocol(value: object) -> SubscriptionProtocol | None:
    """``value`` as a :class:`SubscriptionProtocol`, or None if it cannot be one."""
    if isinstance(value, SubscriptionProtocol):
        return value
    if callable(getattr(value, "subscribe_message", None)) and callable(
        getattr(value, "unsubscribe_message", None)
    ):
        return _PerChannel(value)
    return None


def plan_requests(
    protocol: SubscriptionProtocol, channels: Sequence[str], *, subscribe: bool = True
) -> list[list[str]]:
    """Split ``channels`` into requests, in order, within the protocol's channel and character
    limits. Raises ValueError naming a channel that does not fit in a request on its own."""
    build = protocol.subscribe_request if subscribe else protocol.unsubscribe_request
    limit = protocol.max_message_chars
    per_message = max(protocol.max_per_message, 1)
    requests: list[list[str]] = []
    current: list[str] = []
    for channel in channels:
        candidate = [*current, channel]
        fits = len(candidate) <= per_message and (
            limit is None or _length(build(candidate, _WIDEST_ID)) <= limit
        )
        if fits:
            current = candidate
            continue
        if current:
            requests.append(current)
        if limit is not None and _length(build([channel], _WIDEST_ID)) > limit:
            raise ValueError(f"channel {channel!r} does not fit in a request of {limit} characters")
        current = [channel]
    if current:
        requests.append(current)
    return requests


def _length(message: object) -> int:
    return len(encode_outgoing(message))
