"""Requests waiting for the server's answer, and matching answers to them.

Two kinds. Subscription requests: the manager gives every one an id (:meth:`Requests.open`),
sends it, and waits on its ``done`` event. The user's :meth:`ManagedWebSocket.request`: a
``match`` predicate (:meth:`Requests.expect`), the first inbound message it accepts is the answer.
Whoever reads the connection (the receive loop or a pulling consumer) offers each inbound
message to :meth:`Requests.consume` while any request waits (:attr:`Requests.waiting`): an
answer to one of ours is consumed, not delivered. Anything else is delivered, including a late
answer to a request that gave up waiting and answers to requests the user sent with send().
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import anyio

from .._connection import WebSocketConnection
from .._models import WebSocketStats
from .._subscriptions import SubscriptionProtocol, SubscriptionReply

__all__ = ["Expected", "PendingRequest", "Requests"]


class PendingRequest:
    """One request on one connection. ``reply`` is the refusal, or None once acknowledged;
    ``lost`` when its connection ended first."""

    __slots__ = ("channels", "conn", "done", "lost", "remaining", "reply", "request_id")

    def __init__(self, request_id: int, conn: WebSocketConnection, channels: list[str]) -> None:
        self.request_id = request_id
        self.conn = conn
        self.channels = channels
        self.remaining = set(channels)  # for venues that acknowledge channel by channel
        self.done = anyio.Event()
        self.reply: SubscriptionReply | None = None
        self.lost = False


class Expected:
    """A :meth:`ManagedWebSocket.request` waiting on ``conn``: ``answer`` is the first message
    ``match`` accepted (then ``done`` is set); ``lost`` when its connection ended first."""

    __slots__ = ("answer", "conn", "done", "lost", "match")

    def __init__(self, conn: WebSocketConnection, match: Callable[[Any], object]) -> None:
        self.conn = conn
        self.match = match
        self.done = anyio.Event()
        self.answer: Any = None
        self.lost = False


class Requests:
    __slots__ = ("_expected", "_logger", "_next_id", "_pending", "_protocol", "_stats", "waiting")

    def __init__(
        self, protocol: SubscriptionProtocol, stats: WebSocketStats, logger: logging.Logger
    ) -> None:
        self._protocol = protocol
        self._stats = stats
        self._logger = logger
        self._next_id = 1
        self._pending: dict[int, PendingRequest] = {}  # oldest first
        self._expected: list[Expected] = []  # request()s, oldest first
        #: Whether any request waits: only then are inbound messages offered to consume().
        self.waiting = False

    def _update(self) -> None:
        self.waiting = bool(self._pending) or bool(self._expected)

    def next_id(self) -> int:
        request_id = self._next_id
        self._next_id += 1
        return request_id

    def open(self, conn: WebSocketConnection, channels: list[str]) -> PendingRequest:
        request = PendingRequest(self.next_id(), conn, channels)
        self._pending[request.request_id] = request
        self.waiting = True
        return request

    def expect(self, conn: WebSocketConnection, match: Callable[[Any], object]) -> Expected:
        """A request() about to be sent on ``conn``: its answer is the first message ``match``
        accepts. Registered before the send: the answer may be read before the send returns.
        The caller must :meth:`unexpect` it once done (answered, timed out or cancelled)."""
        expected = Expected(conn, match)
        self._expected.append(expected)
        self.waiting = True
        return expected

    def unexpect(self, expected: Expected) -> None:
        """``expected`` waits no more: a late answer is delivered. Idempotent."""
        with contextlib.suppress(ValueError):
            self._expected.remove(expected)
        self._update()

    def consume(self, conn: WebSocketConnection, message: Any) -> bool:
        """True if ``message`` answers one of our requests on ``conn`` (it is then consumed)."""
        if self._pending and self._consume_reply(conn, message):
            return True
        return bool(self._expected) and self._consume_answer(conn, message)

    def _consume_answer(self, conn: WebSocketConnection, message: Any) -> bool:
        for expected in self._expected:
            if expected.conn is not conn:
                continue
            try:
                accepted = expected.match(message)
            except Exception:
                self._stats.callback_errors += 1
                self._logger.exception("! a request's match raised; the message is delivered")
                continue
            if accepted:
                self._expected.remove(expected)
                self._update()
                expected.answer = message
                expected.done.set()
                return True
        return False

    def _consume_reply(self, conn: WebSocketConnection, message: Any) -> bool:
        try:
            reply = self._protocol.parse_reply(message)
        except Exception:
            self._stats.callback_errors += 1
            self._logger.exception("! parse_reply raised; the message is delivered")
            return False
        if reply is None:
            return False
        request = self._match(conn, reply)
        if request is None:
            return False
        if not reply.ok:
            self._finish(request, reply)
        elif reply.channels:
            request.remaining.difference_update(reply.channels)
            if not request.remaining:
                self._finish(request, None)
        else:
            self._finish(request, None)
        return True

    def _match(self, conn: WebSocketConnection, reply: SubscriptionReply) -> PendingRequest | None:
        if reply.request_id is not None:
            request = self._pending.get(reply.request_id)
            return request if request is not None and request.conn is conn else None
        for request in self._pending.values():
            if request.conn is not conn:
                continue
            if not reply.channels or request.remaining.intersection(reply.channels):
                return request
        return None

    def _finish(self, request: PendingRequest, reply: SubscriptionReply | None) -> None:
        self._pending.pop(request.request_id, None)
        self._update()
        request.reply = reply
        request.done.set()

    def abandon(self, request: PendingRequest) -> None:
        """Stop waiting for ``request`` (its time is up): a late answer is delivered."""
        self._pending.pop(request.request_id, None)
        self._update()

    def forget(self, conn: WebSocketConnection) -> None:
        """``conn`` ended: its requests will never be answered."""
        for request in [r for r in self._pending.values() if r.conn is conn]:
            request.lost = True
            self._finish(request, None)
        if self._expected:
            lost = [expected for expected in self._expected if expected.conn is conn]
            for expected in lost:
                self._expected.remove(expected)
                expected.lost = True
                expected.done.set()
            self._update()
