"""Matching the server's answers to our requests (``_manager/_acks.py``), without sockets."""

from __future__ import annotations

import logging
from typing import Any, cast

from managed_websocket import (
    BinanceSubscriptions,
    OkxSubscriptions,
    SubscriptionProtocol,
    SubscriptionReply,
    WebSocketStats,
)
from managed_websocket._connection import WebSocketConnection
from managed_websocket._manager._acks import Requests

A = cast(WebSocketConnection, object())  # only their identity matters here
B = cast(WebSocketConnection, object())
LOG = logging.getLogger("test")


def requests(protocol: SubscriptionProtocol) -> tuple[Requests, WebSocketStats]:
    stats = WebSocketStats()
    return Requests(protocol, stats, LOG), stats


def test_answers_by_id_on_the_same_connection_only() -> None:
    pending, _ = requests(BinanceSubscriptions())
    first = pending.open(A, ["a"])
    second = pending.open(B, ["b"])
    assert (first.request_id, second.request_id) == (1, 2)
    # An answer to request 2 on connection A is not ours: delivered.
    assert not pending.consume(A, {"result": None, "id": 2})
    assert pending.consume(B, {"result": None, "id": 2})
    assert second.done.is_set()
    assert second.reply is None
    assert pending.consume(A, {"error": {"code": 2, "msg": "no"}, "id": 1})
    assert first.reply == SubscriptionReply(ok=False, request_id=1, code=2, reason="no")
    assert not pending.waiting


def test_an_answer_nobody_waits_for_is_delivered() -> None:
    pending, _ = requests(BinanceSubscriptions())
    # The user's own request with its own id, and a late answer to one we gave up on.
    assert not pending.consume(A, {"result": ["a@trade"], "id": 1})
    late = pending.open(A, ["a"])
    pending.abandon(late)
    assert not pending.consume(A, {"result": None, "id": late.request_id})
    assert not late.done.is_set()


def test_channel_by_channel_answers_and_an_anonymous_error_for_the_oldest() -> None:
    pending, _ = requests(OkxSubscriptions())
    first = pending.open(A, ["tickers:BTC-USDT", "trades:BTC-USDT"])
    second = pending.open(A, ["tickers:ETH-USDT"])
    ack = {"event": "subscribe", "arg": {"channel": "trades", "instId": "BTC-USDT"}}
    assert pending.consume(A, ack)
    assert not first.done.is_set()  # one of two channels answered
    ack = {"event": "subscribe", "arg": {"channel": "tickers", "instId": "ETH-USDT"}}
    assert pending.consume(A, ack)
    assert second.done.is_set()  # matched by channel, not by age
    assert pending.consume(A, {"event": "error", "code": "60012", "msg": "bad"})
    assert first.done.is_set()
    assert first.reply is not None
    assert first.reply.code == "60012"


def test_a_lost_connection_releases_its_waiters() -> None:
    pending, _ = requests(BinanceSubscriptions())
    on_a, on_b = pending.open(A, ["a"]), pending.open(B, ["b"])
    pending.forget(A)
    assert on_a.done.is_set()
    assert on_a.lost
    assert not on_b.done.is_set()
    assert pending.waiting


def test_a_parse_reply_that_raises_is_counted_and_the_message_delivered() -> None:
    class Broken(BinanceSubscriptions):
        def parse_reply(self, message: Any) -> SubscriptionReply | None:
            raise KeyError("oops")

    pending, stats = requests(Broken())
    pending.open(A, ["a"])
    assert not pending.consume(A, {"result": None, "id": 1})
    assert stats.callback_errors == 1


def test_request_matchers_take_the_first_match_on_their_connection_only() -> None:
    pending, stats = requests(BinanceSubscriptions())
    assert not pending.waiting
    first = pending.expect(A, lambda m: m.get("id") == 1)
    second = pending.expect(A, lambda m: m.get("id") in (1, 2))
    on_b = pending.expect(B, lambda m: True)
    assert pending.waiting
    assert pending.consume(A, {"id": 1})  # the oldest matcher that accepts it
    assert first.done.is_set()
    assert first.answer == {"id": 1}
    assert not second.done.is_set()
    assert pending.consume(A, {"id": 1, "again": True})
    assert second.answer == {"id": 1, "again": True}
    assert not pending.consume(A, {"id": 2})  # nobody waits on A any more
    pending.forget(B)
    assert on_b.lost
    assert on_b.done.is_set()
    assert not pending.waiting
    assert stats.callback_errors == 0


def test_an_unexpected_matcher_is_gone_and_a_raising_match_is_counted() -> None:
    pending, stats = requests(BinanceSubscriptions())
    gone = pending.expect(A, lambda m: True)
    pending.unexpect(gone)
    pending.unexpect(gone)  # idempotent
    assert not pending.waiting
    assert not pending.consume(A, {"id": 1})
    broken = pending.expect(A, lambda m: m["missing"])
    assert not pending.consume(A, {"id": 1})
    assert stats.callback_errors == 1
    assert not broken.done.is_set()
    # Subscription answers come first: a matcher that would accept one does not see it.
    pending.open(A, ["a"])
    taker = pending.expect(A, lambda m: True)
    assert pending.consume(A, {"result": None, "id": 1})
    assert not taker.done.is_set()
