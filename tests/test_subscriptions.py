"""Subscription protocols without sockets: the requests each venue's dialect builds, how its
answers read, and how channels are split into requests."""

from __future__ import annotations

import json
from typing import Any

import pytest

from managed_websocket import (
    BinanceSubscriptions,
    BybitSubscriptions,
    GenericSubscriptions,
    OkxSubscriptions,
    SubscriptionProtocol,
    SubscriptionReply,
)
from managed_websocket._messages import encode_outgoing
from managed_websocket._subscriptions import as_protocol, plan_requests


def test_generic_is_todays_format_one_channel_per_message_and_no_answers() -> None:
    protocol = GenericSubscriptions()
    assert protocol.subscribe_request(["btcusdt@trade"], 1) == {
        "type": "subscribe",
        "channel": "btcusdt@trade",
    }
    assert protocol.unsubscribe_request(["c"], 2) == {"type": "unsubscribe", "channel": "c"}
    assert plan_requests(protocol, ["a", "b", "c"]) == [["a"], ["b"], ["c"]]
    assert not protocol.acknowledged
    # Its own "subscribed" messages are data to the generic protocol: delivered, not consumed.
    assert protocol.parse_reply({"type": "subscribed", "channel": "a"}) is None
    assert GenericSubscriptions() == GenericSubscriptions()
    assert repr(GenericSubscriptions()) == "GenericSubscriptions()"


def test_binance_requests_and_answers() -> None:
    protocol = BinanceSubscriptions()
    assert protocol.subscribe_request(["a@trade", "b@trade"], 7) == {
        "method": "SUBSCRIBE",
        "params": ["a@trade", "b@trade"],
        "id": 7,
    }
    assert protocol.unsubscribe_request(["a@trade"], 8)["method"] == "UNSUBSCRIBE"  # type: ignore[index]
    assert protocol.parse_reply({"result": None, "id": 7}) == SubscriptionReply(
        ok=True, request_id=7
    )
    refused = protocol.parse_reply({"error": {"code": 2, "msg": "Invalid request"}, "id": 7})
    assert refused == SubscriptionReply(ok=False, request_id=7, code=2, reason="Invalid request")
    # The older error shape has no id: matched to the oldest request by the manager.
    old = protocol.parse_reply({"code": 2, "msg": "Invalid request: unknown"})
    assert old == SubscriptionReply(ok=False, code=2, reason="Invalid request: unknown")
    # Works on raw text too (decode=None), and leaves data alone.
    assert protocol.parse_reply('{"result":null,"id":9}') == SubscriptionReply(
        ok=True, request_id=9
    )
    for data in (
        {"stream": "a@trade", "data": {"e": "trade"}},
        {"result": ["a@trade"], "id": 3, "extra": 1},
        {"e": "trade", "code": 2},
        "pong",
        b"\x00",
        [1, 2],
    ):
        assert protocol.parse_reply(data) is None
    assert protocol.send_rate_limit == 4.0  # the venue allows 5 a second, our pongs included
    assert protocol.max_subscriptions == 1024
    assert BinanceSubscriptions(max_subscriptions=200).max_subscriptions == 200  # futures


def test_okx_channels_answers_one_by_one_and_anonymous_errors() -> None:
    protocol = OkxSubscriptions()
    assert protocol.subscribe_request(["tickers:BTC-USDT", "account"], 1) == {
        "op": "subscribe",
        "args": [{"channel": "tickers", "instId": "BTC-USDT"}, {"channel": "account"}],
    }
    ack = {"event": "subscribe", "arg": {"channel": "tickers", "instId": "BTC-USDT"}, "connId": "x"}
    assert protocol.parse_reply(ack) == SubscriptionReply(ok=True, channels=("tickers:BTC-USDT",))
    error = {"event": "error", "code": "60012", "msg": "Invalid request", "connId": "x"}
    assert protocol.parse_reply(error) == SubscriptionReply(
        ok=False, code="60012", reason="Invalid request"
    )
    data = {"arg": {"channel": "tickers", "instId": "BTC-USDT"}, "data": [{"last": "1"}]}
    assert protocol.parse_reply(data) is None
    assert protocol.parse_reply({"event": "login", "code": "0"}) is None


def test_bybit_requests_and_answers() -> None:
    protocol = BybitSubscriptions()
    assert protocol.subscribe_request(["orderbook.1.BTCUSDT"], 12) == {
        "op": "subscribe",
        "args": ["orderbook.1.BTCUSDT"],
        "req_id": "12",
    }
    ok = {"success": True, "ret_msg": "", "conn_id": "c", "req_id": "12", "op": "subscribe"}
    assert protocol.parse_reply(ok) == SubscriptionReply(ok=True, request_id=12)
    bad = {
        "success": False,
        "ret_msg": "error:handler not found",
        "req_id": "13",
        "op": "subscribe",
    }
    assert protocol.parse_reply(bad) == SubscriptionReply(
        ok=False, request_id=13, reason="error:handler not found"
    )
    # The heartbeat's answer looks alike but is not a subscription answer.
    pong = {"success": True, "ret_msg": "pong", "conn_id": "c", "op": "ping"}
    assert protocol.parse_reply(pong) is None
    assert plan_requests(protocol, [f"t.{n}" for n in range(25)]) == [
        [f"t.{n}" for n in range(10)],
        [f"t.{n}" for n in range(10, 20)],
        [f"t.{n}" for n in range(20, 25)],
    ]


def test_requests_are_split_by_count_and_by_characters_in_order() -> None:
    protocol = BinanceSubscriptions()
    channels = [f"{n:06d}usdt@aggTrade" for n in range(1000)]
    requests = plan_requests(protocol, channels)
    assert [c for request in requests for c in request] == channels  # order kept, none lost
    for request in requests:
        assert len(request) <= protocol.max_per_message
        assert len(encode_outgoing(protocol.subscribe_request(request, 2**53))) <= 4000
    assert len(requests) == 6  # 20+ characters a channel: the character limit binds first
    with pytest.raises(ValueError, match="does not fit in a request of 4000 characters"):
        plan_requests(protocol, ["x" * 5000])


def test_a_subclass_for_another_venue() -> None:
    class Kucoin(SubscriptionProtocol):
        """KuCoin: one topic with up to 100 comma-separated symbols... kept simple here."""

        max_per_message = 100
        acknowledged = True

        def subscribe_request(self, channels: Any, request_id: int) -> object:
            return {"id": str(request_id), "type": "subscribe", "topic": ",".join(channels)}

        def unsubscribe_request(self, channels: Any, request_id: int) -> object:
            return {"id": str(request_id), "type": "unsubscribe", "topic": ",".join(channels)}

        def parse_reply(self, message: Any) -> SubscriptionReply | None:
            if isinstance(message, dict) and message.get("type") == "ack":
                return SubscriptionReply(ok=True, request_id=int(message["id"]))
            return None

    protocol = Kucoin()
    assert as_protocol(protocol) is protocol
    assert json.loads(encode_outgoing(protocol.subscribe_request(["a", "b"], 3))) == {
        "id": "3",
        "type": "subscribe",
        "topic": "a,b",
    }
    assert protocol.parse_reply({"type": "ack", "id": "3"}) == SubscriptionReply(True, 3)


def test_a_plain_object_with_the_one_channel_methods_still_works() -> None:
    class Kraken:
        def subscribe_message(self, channel: str) -> object:
            return {"method": "subscribe", "params": {"channel": channel}}

        def unsubscribe_message(self, channel: str) -> object:
            return {"method": "unsubscribe", "params": {"channel": channel}}

    protocol = as_protocol(Kraken())
    assert protocol is not None
    assert protocol.subscribe_request(["book"], 1) == {
        "method": "subscribe",
        "params": {"channel": "book"},
    }
    assert as_protocol(object()) is None
    with pytest.raises(NotImplementedError, match="must override subscribe_request"):
        SubscriptionProtocol().subscribe_request(["a"], 1)
