from __future__ import annotations

import dataclasses
import math
import ssl
from collections.abc import Mapping
from typing import Any

import pytest

from managed_websocket._messages import decode_json_or_raw
from managed_websocket._models import ReconnectStrategy
from managed_websocket._settings import (
    _VALIDATORS,
    ManagedWebSocketOptions,
    Settings,
    resolve_settings,
)
from managed_websocket._subscriptions import GenericSubscriptions

SETTING_NAMES = {f.name for f in dataclasses.fields(Settings)}

#: (option, config path under "websocket", low bound, high bound, default)
CONFIG_TABLE: list[tuple[str, tuple[str, ...], float, float, float]] = [
    ("ping_interval", ("ping", "interval"), 5, 60, 20.0),
    ("ping_timeout", ("ping", "timeout"), 5, 30, 10.0),
    ("connection_timeout", ("connection", "timeout"), 5, 120, 30.0),
    ("reconnect_delay", ("reconnect", "delay"), 0, 300, 1.0),
    ("max_reconnect_delay", ("reconnect", "max_delay"), 1, 600, 60.0),
    ("max_reconnect_attempts", ("reconnect", "max_attempts"), 0, 100, 10),
    ("stable_connection_time", ("reconnect", "stable_connection_time"), 10, 300, 60.0),
    ("server_unavailable_delay", ("reconnect", "server_unavailable_delay"), 10, 300, 30.0),
    ("disconnect_check_interval", ("proactive", "disconnect_check_interval"), 1, 60, 10.0),
    ("reconnect_check_interval", ("proactive", "reconnect_check_interval"), 0.5, 60, 5.0),
    ("disconnect_alert_interval", ("alert", "disconnect_interval"), 30, 3600, 300.0),
    ("queue_size", ("queue", "size"), 0, 10000, 1000),
]
INTEGER_OPTIONS = {"max_reconnect_attempts", "queue_size"}


def config_with(path: tuple[str, ...], value: object) -> dict[str, Any]:
    node: object = value
    for key in reversed(path):
        node = {key: node}
    return {"websocket": node}


def resolved(name: str, settings: Settings) -> object:
    return getattr(settings, name)


def test_defaults() -> None:
    settings = resolve_settings({})
    assert settings == Settings()
    assert settings.ping_interval == 20.0
    assert settings.ping_timeout == 10.0
    assert settings.connection_timeout == 30.0
    assert settings.close_timeout == 10.0
    assert settings.reconnect_strategy is ReconnectStrategy.EXPONENTIAL_BACKOFF
    assert settings.reconnect_delay == 1.0
    assert settings.max_reconnect_delay == 60.0
    assert settings.max_reconnect_attempts == 10
    assert settings.reconnect_jitter == 0.5
    assert settings.auto_reconnect is True
    assert settings.stable_connection_time == 60.0
    assert settings.server_unavailable_delay == 30.0
    assert settings.disconnect_check_interval == 10.0
    assert settings.reconnect_check_interval == 5.0
    assert settings.disconnect_alert_interval == 300.0
    assert settings.queue_size == 1000
    assert settings.overflow == "block"
    assert settings.max_message_size == 16 * 1024 * 1024
    assert settings.headers == ()
    assert settings.subprotocols == ()
    assert settings.ssl_context is None
    assert settings.decode is decode_json_or_raw
    assert isinstance(settings.subscription_protocol, GenericSubscriptions)
    for callback in (
        "should_disconnect",
        "should_reconnect",
        "on_connect",
        "on_disconnect",
        "on_message",
        "on_alert",
        "on_disconnect_alert",
    ):
        assert getattr(settings, callback) is None


def test_settings_are_frozen() -> None:
    settings = resolve_settings({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.ping_timeout = 1.0  # type: ignore[misc]


def test_every_option_is_declared_validated_and_stored() -> None:
    assert set(_VALIDATORS) == SETTING_NAMES
    # urls is the manager's (its endpoints), not a setting.
    assert ManagedWebSocketOptions.__optional_keys__ == SETTING_NAMES | {"config", "urls"}
    assert ManagedWebSocketOptions.__required_keys__ == frozenset()


def test_config_table_covers_the_spec_keys() -> None:
    defaults = Settings()
    for name, _path, low, high, default in CONFIG_TABLE:
        assert resolved(name, defaults) == default
        assert low <= default <= high


# ---------------------------------------------------------------------------------------------
# config mapping


@pytest.mark.parametrize(("name", "path", "low", "high", "default"), CONFIG_TABLE)
def test_config_value_in_bounds_is_used(
    name: str, path: tuple[str, ...], low: float, high: float, default: float
) -> None:
    value = 7 if name in INTEGER_OPTIONS else (low + high) / 2
    settings = resolve_settings({"config": config_with(path, value)})
    assert resolved(name, settings) == value
    assert type(resolved(name, settings)) is (int if name in INTEGER_OPTIONS else float)


@pytest.mark.parametrize(("name", "path", "low", "high", "default"), CONFIG_TABLE)
@pytest.mark.parametrize(
    ("raw", "bound"),
    [(-1e9, "low"), (-math.inf, "low"), (1e9, "high"), (math.inf, "high"), ("inf", "high")],
)
def test_config_value_is_clamped(
    name: str,
    path: tuple[str, ...],
    low: float,
    high: float,
    default: float,
    raw: object,
    bound: str,
) -> None:
    settings = resolve_settings({"config": config_with(path, raw)})
    expected = low if bound == "low" else high
    assert resolved(name, settings) == expected
    assert type(resolved(name, settings)) is (int if name in INTEGER_OPTIONS else float)


@pytest.mark.parametrize(("name", "path", "low", "high", "default"), CONFIG_TABLE)
@pytest.mark.parametrize(
    "raw",
    [math.nan, "nan", "abc", "", {"x": 1}, [5], True, False, None, object(), b"\xff"],
    ids=["nan", "nan-str", "abc", "empty", "dict", "list", "true", "false", "none", "obj", "bytes"],
)
def test_unusable_config_value_falls_back_to_default(
    name: str, path: tuple[str, ...], low: float, high: float, default: float, raw: object
) -> None:
    settings = resolve_settings({"config": config_with(path, raw)})
    assert resolved(name, settings) == default


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("12", 12.0), ("  12.5 ", 12.5), (12, 12.0), (10**400, 60.0)],
)
def test_config_value_conversions(raw: object, expected: float) -> None:
    settings = resolve_settings({"config": config_with(("ping", "interval"), raw)})
    assert settings.ping_interval == expected


@pytest.mark.parametrize(("raw", "expected"), [(5.9, 5), ("7", 7), ("7.9", 7), (10**400, 100)])
def test_config_integer_values_are_truncated(raw: object, expected: int) -> None:
    settings = resolve_settings({"config": config_with(("reconnect", "max_attempts"), raw)})
    assert settings.max_reconnect_attempts == expected


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"websocket": None},
        {"websocket": "not a mapping"},
        {"websocket": {"ping": 5}},  # a non-mapping level
        {"websocket": {"ping": None}},
        {"websocket": {"ping": {"interval": None}}},
        {"websocket": {"ping": {"other": 30}}},
        {"ping": {"interval": 30}},  # not under "websocket": ignored
    ],
)
def test_config_missing_section_or_level_gives_defaults(config: Mapping[str, Any]) -> None:
    assert resolve_settings({"config": config}) == Settings()


def test_config_none_gives_defaults() -> None:
    assert resolve_settings({"config": None}) == Settings()


def test_full_config() -> None:
    config = {
        "websocket": {
            "ping": {"interval": 15, "timeout": 6},
            "connection": {"timeout": 12},
            "reconnect": {
                "delay": 2,
                "max_delay": 120,
                "max_attempts": 0,
                "stable_connection_time": 30,
                "server_unavailable_delay": 45,
            },
            "proactive": {"disconnect_check_interval": 2, "reconnect_check_interval": 0.5},
            "alert": {"disconnect_interval": 60},
            "queue": {"size": 0},
        }
    }
    assert resolve_settings({"config": config}) == Settings(
        ping_interval=15.0,
        ping_timeout=6.0,
        connection_timeout=12.0,
        reconnect_delay=2.0,
        max_reconnect_delay=120.0,
        max_reconnect_attempts=0,
        stable_connection_time=30.0,
        server_unavailable_delay=45.0,
        disconnect_check_interval=2.0,
        reconnect_check_interval=0.5,
        disconnect_alert_interval=60.0,
        queue_size=0,
    )


def test_keyword_overrides_config_and_is_not_clamped() -> None:
    config = config_with(("reconnect", "delay"), 5)
    config["websocket"]["ping"] = {"interval": 30}
    settings = resolve_settings({"config": config, "reconnect_delay": 0.05})
    assert settings.reconnect_delay == 0.05  # below nothing, but also not the config's 5
    assert settings.ping_interval == 30.0  # the config still applies to the rest


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("stable_connection_time", 0.05),
        ("server_unavailable_delay", 0.2),
        ("ping_interval", 0.01),
        ("max_reconnect_delay", 10_000.0),
        ("max_reconnect_attempts", 1000),
        ("queue_size", 1_000_000),
        ("disconnect_alert_interval", 0.001),
    ],
)
def test_keywords_outside_config_bounds_are_kept(name: str, value: float) -> None:
    assert resolved(name, resolve_settings({name: value})) == value


def test_config_must_be_a_mapping() -> None:
    with pytest.raises(TypeError, match="^config must be a mapping or None, not list$"):
        resolve_settings({"config": [("websocket", {})]})


# ---------------------------------------------------------------------------------------------
# explicit keywords


def test_keyword_values_are_stored() -> None:
    context = ssl.create_default_context()

    def callback(*args: object) -> None:
        return None

    settings = resolve_settings(
        {
            "ping_interval": None,
            "max_reconnect_attempts": None,
            "reconnect_strategy": "fixed_delay",
            "reconnect_jitter": 0,
            "auto_reconnect": False,
            "queue_size": 0,
            "overflow": "drop_oldest",
            "max_message_size": 1,
            "headers": {"Authorization": "Bearer x", "X-Id": "1"},
            "subprotocols": ["v1.json", "v2.json"],
            "ssl_context": context,
            "decode": None,
            "on_message": callback,
            "on_alert": callback,
        }
    )
    assert settings.ping_interval is None
    assert settings.max_reconnect_attempts is None
    assert settings.reconnect_strategy is ReconnectStrategy.FIXED_DELAY
    assert settings.reconnect_jitter == 0.0
    assert settings.auto_reconnect is False
    assert settings.queue_size == 0
    assert settings.overflow == "drop_oldest"
    assert settings.max_message_size == 1
    assert settings.headers == (("Authorization", "Bearer x"), ("X-Id", "1"))
    assert settings.subprotocols == ("v1.json", "v2.json")
    assert settings.ssl_context is context
    assert settings.decode is None
    assert resolved("on_message", settings) is callback
    assert resolved("on_alert", settings) is callback


@pytest.mark.parametrize(
    "headers",
    [[("A", "1"), ("A", "2")], (("A", "1"), ("A", "2")), [["A", "1"], ["A", "2"]]],
)
def test_headers_as_pairs_keep_order_and_repeats(headers: object) -> None:
    assert resolve_settings({"headers": headers}).headers == (("A", "1"), ("A", "2"))


@pytest.mark.parametrize("strategy", list(ReconnectStrategy))
def test_reconnect_strategy_by_member_or_value(strategy: ReconnectStrategy) -> None:
    assert resolve_settings({"reconnect_strategy": strategy}).reconnect_strategy is strategy
    assert resolve_settings({"reconnect_strategy": strategy.value}).reconnect_strategy is strategy


@pytest.mark.parametrize("overflow", ["block", "drop_oldest", "drop_newest", "error"])
def test_overflow_policies(overflow: str) -> None:
    assert resolve_settings({"overflow": overflow}).overflow == overflow


def test_custom_subscription_protocol() -> None:
    class Protocol:
        def subscribe_message(self, channel: str) -> object:
            return f"SUB {channel}"

        def unsubscribe_message(self, channel: str) -> object:
            return f"UNSUB {channel}"

    protocol = Protocol()
    # A plain object with the two one-channel methods is wrapped: one channel per request.
    resolved = resolve_settings({"subscription_protocol": protocol}).subscription_protocol
    assert resolved.subscribe_request(["c"], 7) == "SUB c"
    assert resolved.unsubscribe_request(["c"], 8) == "UNSUB c"
    assert resolved.max_per_message == 1
    assert not resolved.acknowledged


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"reconnect_delay": -1}, "^reconnect_delay must be >= 0, got -1$"),
        ({"reconnect_delay": math.nan}, "^reconnect_delay must be a finite number, got nan$"),
        ({"reconnect_delay": math.inf}, "^reconnect_delay must be a finite number, got inf$"),
        ({"max_reconnect_delay": 10**400}, "^max_reconnect_delay must be a finite number"),
        ({"ping_timeout": 0}, "^ping_timeout must be > 0, got 0$"),
        ({"ping_interval": 0}, "^ping_interval must be > 0, got 0$"),
        ({"connection_timeout": -5.0}, "^connection_timeout must be > 0, got -5.0$"),
        ({"close_timeout": 0.0}, "^close_timeout must be > 0, got 0.0$"),
        ({"disconnect_check_interval": 0}, "^disconnect_check_interval must be > 0, got 0$"),
        ({"reconnect_check_interval": 0}, "^reconnect_check_interval must be > 0, got 0$"),
        ({"disconnect_alert_interval": 0}, "^disconnect_alert_interval must be > 0, got 0$"),
        ({"reconnect_jitter": 1.5}, "^reconnect_jitter must be between 0 and 1, got 1.5$"),
        ({"reconnect_jitter": -0.1}, "^reconnect_jitter must be between 0 and 1, got -0.1$"),
        ({"max_reconnect_attempts": -1}, "^max_reconnect_attempts must be >= 0, got -1$"),
        ({"queue_size": -1}, "^queue_size must be >= 0, got -1$"),
        ({"max_message_size": 0}, "^max_message_size must be >= 1, got 0$"),
        ({"overflow": "drop"}, "^overflow must be one of 'block', 'drop_oldest', 'drop_newest'"),
        ({"reconnect_strategy": "linear"}, "^reconnect_strategy must be one of 'immediate', "),
        ({"headers": {"X": "a\r\nInjected: 1"}}, "^headers: invalid header 'X'$"),
        ({"headers": {"": "x"}}, "^headers: invalid header ''$"),
    ],
)
def test_keyword_value_errors(options: Mapping[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_settings(options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"reconnect_delay": "1"}, "^reconnect_delay must be a number, not str$"),
        ({"reconnect_delay": True}, "^reconnect_delay must be a number, not bool$"),
        ({"ping_timeout": None}, "^ping_timeout must be a number, not NoneType$"),
        ({"ping_interval": "20"}, "^ping_interval must be a number, not str$"),
        ({"max_reconnect_attempts": 3.0}, "^max_reconnect_attempts must be an int, not float$"),
        ({"max_reconnect_attempts": True}, "^max_reconnect_attempts must be an int, not bool$"),
        ({"queue_size": 10.5}, "^queue_size must be an int, not float$"),
        ({"queue_size": None}, "^queue_size must be an int, not NoneType$"),
        ({"max_message_size": "1M"}, "^max_message_size must be an int, not str$"),
        ({"auto_reconnect": 1}, "^auto_reconnect must be a bool, not int$"),
        ({"overflow": None}, "^overflow must be a str, not NoneType$"),
        ({"reconnect_strategy": 2}, "^reconnect_strategy must be a ReconnectStrategy, not int$"),
        ({"headers": "X: y"}, "^headers must be a mapping or pairs of str, not str$"),
        ({"headers": 5}, "^headers must be a mapping or pairs of str, not int$"),
        ({"headers": [("a", "b", "c")]}, r"^headers must hold \(name, value\) pairs"),
        ({"headers": {"X": 1}}, "^headers names and values must be str"),
        ({"headers": {b"X": "1"}}, "^headers names and values must be str"),
        ({"subprotocols": "chat"}, "^subprotocols must be a sequence of str, not str$"),
        ({"subprotocols": [b"chat"]}, "^subprotocols must hold str, got b'chat'$"),
        ({"ssl_context": True}, "^ssl_context must be an ssl.SSLContext or None, not bool$"),
        ({"decode": "json"}, "^decode must be callable or None, not str$"),
        ({"on_message": 42}, "^on_message must be callable or None, not int$"),
        ({"should_reconnect": True}, "^should_reconnect must be callable or None, not bool$"),
        ({"subscription_protocol": object()}, "^subscription_protocol must be a Subscription"),
        ({"heartbeat": "ping"}, "^heartbeat must be a Heartbeat or None, not str$"),
        ({"ping_reply": print}, "^ping_reply must be a PingReply or None, not builtin_function"),
        ({"max_subscriptions": 2.5}, "^max_subscriptions must be an int, not float$"),
        ({"send_rate_limit": "5"}, "^send_rate_limit must be a number, not str$"),
    ],
)
def test_keyword_type_errors(options: Mapping[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        resolve_settings(options)


@pytest.mark.parametrize(
    "callback",
    [
        "should_disconnect",
        "should_reconnect",
        "on_connect",
        "on_disconnect",
        "on_message",
        "on_alert",
        "on_disconnect_alert",
    ],
)
def test_callbacks_accept_sync_and_async_functions_and_none(callback: str) -> None:
    def sync_fn(*args: object) -> bool:
        return True

    async def async_fn(*args: object) -> bool:
        return True

    assert resolved(callback, resolve_settings({callback: sync_fn})) is sync_fn
    assert resolved(callback, resolve_settings({callback: async_fn})) is async_fn
    assert resolved(callback, resolve_settings({callback: None})) is None


def test_unknown_option() -> None:
    with pytest.raises(TypeError, match="^unexpected option 'x'$"):
        resolve_settings({"x": 1})


def test_unknown_option_suggests_a_close_name() -> None:
    message = r"^unexpected option 'ping_intreval' \(did you mean 'ping_interval'\?\)$"
    with pytest.raises(TypeError, match=message):
        resolve_settings({"ping_intreval": 5})


def test_unknown_option_is_reported_before_a_bad_value() -> None:
    with pytest.raises(TypeError, match="^unexpected option 'ssl'"):
        resolve_settings({"ping_timeout": -1, "ssl": False})


def test_exchange_options_resolve_with_the_protocols_venue_limits() -> None:
    from managed_websocket import BinanceSubscriptions, Heartbeat, PingReply
    from managed_websocket._settings import effective_max_subscriptions, effective_send_rate

    plain = resolve_settings({})
    assert (plain.ack_timeout, plain.heartbeat, plain.ping_reply) == (10.0, None, None)
    assert effective_send_rate(plain) is None  # unlimited by default
    assert effective_max_subscriptions(plain) is None
    binance = resolve_settings({"subscription_protocol": BinanceSubscriptions()})
    assert effective_send_rate(binance) == 4.0
    assert effective_max_subscriptions(binance) == 1024
    mine = resolve_settings(
        {
            "subscription_protocol": BinanceSubscriptions(),
            "send_rate_limit": 2,
            "max_subscriptions": 200,
        }
    )
    assert effective_send_rate(mine) == 2.0
    assert effective_max_subscriptions(mine) == 200
    heartbeat = Heartbeat("ping", 20, lambda m: m == "pong")
    ping_reply = PingReply(lambda m: "ping" in m, lambda m: {"pong": m["ping"]})
    both = resolve_settings({"heartbeat": heartbeat, "ping_reply": ping_reply})
    assert (both.heartbeat, both.ping_reply) == (heartbeat, ping_reply)
    for name, value in (("ack_timeout", 0), ("send_rate_limit", -1), ("max_subscriptions", 0)):
        with pytest.raises(ValueError, match=f"^{name} must be"):
            resolve_settings({name: value})


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ((42, 20, bool), TypeError, "message must be a str, bytes, dict, list or a callable"),
        (("ping", 0, bool), ValueError, "interval must be > 0"),
        (("ping", 20, bool, float("inf")), ValueError, "timeout must be > 0"),
        (("ping", "20", bool), TypeError, "interval must be a number, not str"),
        (("ping", 20, "pong"), TypeError, "is_reply must be callable"),
    ],
)
def test_a_heartbeat_is_checked_when_it_is_made(
    arguments: tuple[Any, ...], error: type[Exception], message: str
) -> None:
    from managed_websocket import Heartbeat, PingReply

    with pytest.raises(error, match=message):
        Heartbeat(*arguments)
    with pytest.raises(TypeError, match="must be callable"):
        PingReply("ping", "pong")  # type: ignore[arg-type]
