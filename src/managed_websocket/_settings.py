"""Option resolution: keyword arguments and a ``config`` mapping become one frozen :class:`Settings`.

SPEC section 2: an explicit keyword wins over the ``config`` mapping, which wins over the default.
Values read from ``config`` are clamped into hard bounds, and a value of the wrong type falls back to
the default (config files are edited by operators; a typo must not stop a trading feed). Explicit
keywords are validated but never clamped (tests use tiny delays): a bad one raises at construction.
Pure: no I/O.
"""

from __future__ import annotations

import difflib
import math
import numbers
import ssl
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, TypedDict

from ._events import LifecycleEvent
from ._heartbeat import Heartbeat, PingReply
from ._messages import decode_json_or_raw
from ._models import DisconnectReason, ReconnectStrategy
from ._proxy_dial import ProxyURL, parse_proxy_url
from ._subscriptions import GenericSubscriptions, SubscriptionProtocol, as_protocol

__all__ = [
    "Decoder",
    "HeadersProvider",
    "ManagedWebSocketOptions",
    "OnAlert",
    "OnConnect",
    "OnDisconnect",
    "OnDisconnectAlert",
    "OnEvent",
    "OnMessage",
    "Overflow",
    "Settings",
    "ShouldDisconnect",
    "ShouldReconnect",
    "UrlProvider",
    "check_headers",
    "effective_max_subscriptions",
    "effective_send_rate",
    "resolve_settings",
]

Overflow: TypeAlias = Literal["block", "drop_oldest", "drop_newest", "error"]

# Every callback may be a plain or an async function (SPEC section 2); a result that is awaitable is
# awaited by the manager.
ShouldDisconnect: TypeAlias = Callable[[], bool | Awaitable[bool]]
ShouldReconnect: TypeAlias = Callable[[], bool | float | Awaitable[bool | float]]
OnConnect: TypeAlias = Callable[[], object]
OnDisconnect: TypeAlias = Callable[[DisconnectReason], object]
OnMessage: TypeAlias = Callable[[Any], object]
OnAlert: TypeAlias = Callable[[str, str, Mapping[str, Any]], object]
OnDisconnectAlert: TypeAlias = Callable[[DisconnectReason, int], object]
OnEvent: TypeAlias = Callable[[LifecycleEvent], object]
Decoder: TypeAlias = Callable[[str | bytes], Any]
HeaderPairs: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]]
#: Called before every dial (sync or async): fresh credentials for each attempt.
HeadersProvider: TypeAlias = Callable[[], HeaderPairs | Awaitable[HeaderPairs]]
UrlProvider: TypeAlias = Callable[[], str | Awaitable[str]]

_OVERFLOW_POLICIES: tuple[Overflow, ...] = ("block", "drop_oldest", "drop_newest", "error")


class ManagedWebSocketOptions(TypedDict, total=False):
    """Every keyword option, for ``**options: Unpack[ManagedWebSocketOptions]`` (SPEC section 2)."""

    ping_interval: float | None
    ping_timeout: float
    connection_timeout: float
    close_timeout: float
    reconnect_strategy: (
        ReconnectStrategy
        | Literal["immediate", "fixed_delay", "exponential_backoff", "callback_controlled"]
    )
    reconnect_delay: float
    max_reconnect_delay: float
    max_reconnect_attempts: int | None
    reconnect_jitter: float
    auto_reconnect: bool
    stable_connection_time: float
    server_unavailable_delay: float
    disconnect_check_interval: float
    reconnect_check_interval: float
    disconnect_alert_interval: float
    queue_size: int
    overflow: Overflow
    max_message_size: int
    headers: HeaderPairs | HeadersProvider
    subprotocols: Iterable[str]
    ssl_context: ssl.SSLContext | None
    compression: Literal["deflate"] | None
    proxy: str | Literal[True] | None
    decode: Decoder | None
    subscription_protocol: SubscriptionProtocol | Any
    ack_timeout: float
    max_subscriptions: int | None
    send_rate_limit: float | None
    heartbeat: Heartbeat | None
    ping_reply: PingReply | None
    should_disconnect: ShouldDisconnect | None
    should_reconnect: ShouldReconnect | None
    on_connect: OnConnect | None
    on_disconnect: OnDisconnect | None
    on_message: OnMessage | None
    on_alert: OnAlert | None
    on_disconnect_alert: OnDisconnectAlert | None
    on_event: OnEvent | None
    max_connection_age: float | None
    rotation_timeout: float
    is_warm: Callable[[Any], bool] | None
    dedup_key: Callable[[Any], Hashable] | None
    sequence_of: Callable[[Any], int | None] | None
    max_defer: float | None
    max_silence: float | None
    urls: Sequence[str]
    config: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved options of one manager. Built by :func:`resolve_settings`, never changed."""

    ping_interval: float | None = 20.0  # None disables keepalive
    ping_timeout: float = 10.0
    connection_timeout: float = 30.0  # the whole handshake: TCP, TLS and HTTP upgrade
    close_timeout: float = 10.0
    reconnect_strategy: ReconnectStrategy = ReconnectStrategy.EXPONENTIAL_BACKOFF
    reconnect_delay: float = 1.0
    max_reconnect_delay: float = 60.0
    max_reconnect_attempts: int | None = 10  # None = retry forever
    reconnect_jitter: float = 0.5
    auto_reconnect: bool = True
    stable_connection_time: float = 60.0
    server_unavailable_delay: float = 30.0
    disconnect_check_interval: float = 10.0
    reconnect_check_interval: float = 5.0
    disconnect_alert_interval: float = 300.0
    queue_size: int = 1000  # 0 = unbounded
    overflow: Overflow = "block"
    max_message_size: int = 16 * 1024 * 1024
    # Fixed pairs, or a zero-argument callable (sync or async) called before every dial.
    headers: tuple[tuple[str, str], ...] | HeadersProvider = ()
    subprotocols: tuple[str, ...] = ()
    ssl_context: ssl.SSLContext | None = None  # None = default verified TLS for wss://
    compression: Literal["deflate"] | None = "deflate"  # permessage-deflate offered; None: off
    # A proxy URL (masked in any repr); True: from the environment (wss_proxy...); None: none.
    proxy: ProxyURL | Literal[True] | None = True
    decode: Decoder | None = decode_json_or_raw  # None = raw str/bytes
    subscription_protocol: SubscriptionProtocol = field(default_factory=GenericSubscriptions)
    ack_timeout: float = 10.0  # how long subscribe() waits for an acknowledging protocol's answer
    max_subscriptions: int | None = None  # None: the protocol's (the venue's) limit, if any
    send_rate_limit: float | None = None  # messages/s we send; None: the protocol's, if any
    heartbeat: Heartbeat | None = None  # an application-level ping (a message, not a frame)
    ping_reply: PingReply | None = None  # answers the server's application-level pings
    should_disconnect: ShouldDisconnect | None = None
    should_reconnect: ShouldReconnect | None = None
    on_connect: OnConnect | None = None
    on_disconnect: OnDisconnect | None = None
    on_message: OnMessage | None = None
    on_alert: OnAlert | None = None
    on_disconnect_alert: OnDisconnectAlert | None = None
    # Every lifecycle event, from the first Connecting on (sync or async; see _deliver_events).
    on_event: OnEvent | None = None
    # Rotation, critical sections, gap detection (make-before-break: see _manager/_rotation.py)
    max_connection_age: float | None = None  # rotate (SCHEDULED) once a connection is this old
    rotation_timeout: float = 30.0  # how long a new connection may take to warm up
    is_warm: Callable[[Any], bool] | None = None  # default: its first data message
    dedup_key: Callable[[Any], Hashable] | None = None  # drops duplicates across a rotation
    sequence_of: Callable[[Any], int | None] | None = None  # enables gap detection
    max_defer: float | None = None  # how long critical sections may hold a proactive disconnect
    max_silence: float | None = None  # no data message for this long: DATA_TIMEOUT, reconnect


def resolve_settings(options: Mapping[str, Any]) -> Settings:
    """Resolve keyword ``options`` (including an optional ``config`` mapping) into :class:`Settings`.

    Raises :class:`TypeError` for an unknown option or a value of the wrong type, and
    :class:`ValueError` for a value out of range; the message names the option.
    """
    for name in options:
        if name not in _VALIDATORS and name not in ("config", "urls"):
            raise TypeError(f"unexpected option {name!r}{_suggestion(name)}")
    values: dict[str, Any] = _from_config(_check_config(options.get("config")))
    for name, value in options.items():
        if name != "config":
            values[name] = _VALIDATORS[name](name, value)
    return Settings(**values)


def _suggestion(name: str) -> str:
    close = difflib.get_close_matches(name, [*_VALIDATORS, "config", "urls"], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------------------------------------
# The config mapping: read leniently, clamp into hard bounds (SPEC section 2).


@dataclass(frozen=True, slots=True)
class _Bounded:
    name: str
    path: tuple[str, ...]  # under config["websocket"]
    low: float
    high: float
    integer: bool = False


_CONFIG_TABLE = (
    _Bounded("ping_interval", ("ping", "interval"), 5, 60),
    _Bounded("ping_timeout", ("ping", "timeout"), 5, 30),
    _Bounded("connection_timeout", ("connection", "timeout"), 5, 120),
    _Bounded("reconnect_delay", ("reconnect", "delay"), 0, 300),
    _Bounded("max_reconnect_delay", ("reconnect", "max_delay"), 1, 600),
    _Bounded("max_reconnect_attempts", ("reconnect", "max_attempts"), 0, 100, integer=True),
    _Bounded("stable_connection_time", ("reconnect", "stable_connection_time"), 10, 300),
    _Bounded("server_unavailable_delay", ("reconnect", "server_unavailable_delay"), 10, 300),
    _Bounded("disconnect_check_interval", ("proactive", "disconnect_check_interval"), 1, 60),
    _Bounded("reconnect_check_interval", ("proactive", "reconnect_check_interval"), 0.5, 60),
    _Bounded("disconnect_alert_interval", ("alert", "disconnect_interval"), 30, 3600),
    _Bounded("queue_size", ("queue", "size"), 0, 10000, integer=True),
)


def _check_config(config: object) -> Mapping[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping or None, not {type(config).__name__}")
    return config


def _from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The options that ``config["websocket"]`` sets to a usable value, clamped; others are left out."""
    section = config.get("websocket")
    values: dict[str, Any] = {}
    for entry in _CONFIG_TABLE:
        number = _as_number(_lookup(section, entry.path))
        if number is None:
            continue  # missing or unusable: the default applies
        clamped = min(max(number, entry.low), entry.high)  # inf lands on the bound
        values[entry.name] = int(clamped) if entry.integer else float(clamped)
    return values


def _lookup(node: object, path: tuple[str, ...]) -> object:
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _as_number(value: Any) -> float | None:
    """``value`` as a number, or None when it is missing, a bool, NaN or not convertible."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value  # exact: float(10**400) would overflow, and clamping makes it small anyway
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return None if math.isnan(number) else number


# ---------------------------------------------------------------------------------------------
# Explicit keywords: validated strictly, never clamped.


_Validator: TypeAlias = Callable[[str, Any], object]


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _non_negative(name: str, value: object) -> float:
    number = _number(name, value)
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return number


def _positive(name: str, value: object) -> float:
    # A zero timeout always fails and a zero interval is a busy loop.
    number = _number(name, value)
    if number <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return number


def _positive_or_none(name: str, value: object) -> float | None:
    return None if value is None else _positive(name, value)


def _fraction(name: str, value: object) -> float:
    number = _number(name, value)
    if not 0 <= number <= 1:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return number


def _integer(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _attempts(name: str, value: object) -> int | None:
    return None if value is None else _integer(name, value, 0)


def _queue_size(name: str, value: object) -> int:
    return _integer(name, value, 0)


def _message_size(name: str, value: object) -> int:
    return _integer(name, value, 1)


def _bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return value


def _strategy(name: str, value: object) -> ReconnectStrategy:
    if isinstance(value, ReconnectStrategy):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a ReconnectStrategy, not {type(value).__name__}")
    try:
        return ReconnectStrategy(value)
    except ValueError:
        choices = ", ".join(repr(s.value) for s in ReconnectStrategy)
        raise ValueError(f"{name} must be one of {choices}, got {value!r}") from None


def _overflow(name: str, value: object) -> Overflow:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if value not in _OVERFLOW_POLICIES:
        choices = ", ".join(map(repr, _OVERFLOW_POLICIES))
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _headers_or_provider(name: str, value: object) -> tuple[tuple[str, str], ...] | object:
    """Fixed headers are checked now; a provider's answer before each dial (:func:`check_headers`)."""
    if callable(value):
        return value
    return check_headers(name, value)


def check_headers(name: str, value: object) -> tuple[tuple[str, str], ...]:
    """Headers as (name, value) pairs of str; raises TypeError/ValueError naming ``name``."""
    if isinstance(value, Mapping):
        value = value.items()
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a mapping or pairs of str, not {type(value).__name__}")
    pairs = []
    for pair in value:
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise TypeError(f"{name} must hold (name, value) pairs, got {pair!r}")
        key, val = pair
        if not (isinstance(key, str) and isinstance(val, str)):
            raise TypeError(f"{name} names and values must be str, got {pair!r}")
        if not key or any(c in "\r\n\0" for c in key + val):
            # CR/LF would let a header value inject more header lines into the handshake.
            raise ValueError(f"{name}: invalid header {key!r}")
        pairs.append((key, val))
    return tuple(pairs)


def _subprotocols(name: str, value: object) -> tuple[str, ...]:
    # A lone str is iterable too: "chat" must not become ("c", "h", "a", "t").
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a sequence of str, not {type(value).__name__}")
    protocols = tuple(value)
    for protocol in protocols:
        if not isinstance(protocol, str):
            raise TypeError(f"{name} must hold str, got {protocol!r}")
    return protocols


def _ssl_context(name: str, value: object) -> ssl.SSLContext | None:
    if value is not None and not isinstance(value, ssl.SSLContext):
        raise TypeError(f"{name} must be an ssl.SSLContext or None, not {type(value).__name__}")
    return value


def _compression(name: str, value: object) -> str | None:
    if value is not None and value != "deflate":
        raise ValueError(f"{name} must be 'deflate' or None, got {value!r}")
    return value


def _proxy(name: str, value: object) -> ProxyURL | Literal[True] | None:
    if value is None or value is True:
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a URL str, True or None, not {type(value).__name__}")
    return parse_proxy_url(value)


def _subscription_protocol(name: str, value: object) -> SubscriptionProtocol:
    protocol = as_protocol(value)
    if protocol is None:
        raise TypeError(
            f"{name} must be a SubscriptionProtocol, or have subscribe_message() and "
            f"unsubscribe_message(), not {type(value).__name__}"
        )
    return protocol


def _positive_int_or_none(name: str, value: object) -> int | None:
    return None if value is None else _integer(name, value, 1)


def _instance_or_none(kind: type[Any]) -> _Validator:
    def check(name: str, value: object) -> object:
        if value is not None and not isinstance(value, kind):
            raise TypeError(f"{name} must be a {kind.__name__} or None, not {type(value).__name__}")
        return value

    return check


def _callable_or_none(name: str, value: object) -> object:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, not {type(value).__name__}")
    return value


#: One validator per Settings field; ``config`` is handled on its own.
_VALIDATORS: dict[str, _Validator] = {
    "ping_interval": _positive_or_none,
    "ping_timeout": _positive,
    "connection_timeout": _positive,
    "close_timeout": _positive,
    "reconnect_strategy": _strategy,
    "reconnect_delay": _non_negative,
    "max_reconnect_delay": _non_negative,
    "max_reconnect_attempts": _attempts,
    "reconnect_jitter": _fraction,
    "auto_reconnect": _bool,
    "stable_connection_time": _non_negative,
    "server_unavailable_delay": _non_negative,
    "disconnect_check_interval": _positive,
    "reconnect_check_interval": _positive,
    "disconnect_alert_interval": _positive,
    "queue_size": _queue_size,
    "overflow": _overflow,
    "max_message_size": _message_size,
    "headers": _headers_or_provider,
    "subprotocols": _subprotocols,
    "ssl_context": _ssl_context,
    "compression": _compression,
    "proxy": _proxy,
    "decode": _callable_or_none,
    "subscription_protocol": _subscription_protocol,
    "ack_timeout": _positive,
    "max_subscriptions": _positive_int_or_none,
    "send_rate_limit": _positive_or_none,
    "heartbeat": _instance_or_none(Heartbeat),
    "ping_reply": _instance_or_none(PingReply),
    "max_connection_age": _positive_or_none,
    "rotation_timeout": _positive,
    "max_defer": _positive_or_none,
    "max_silence": _positive_or_none,
    **dict.fromkeys(
        (
            "is_warm",
            "dedup_key",
            "sequence_of",
            "should_disconnect",
            "should_reconnect",
            "on_connect",
            "on_disconnect",
            "on_message",
            "on_alert",
            "on_disconnect_alert",
            "on_event",
        ),
        _callable_or_none,
    ),
}


def effective_send_rate(settings: Settings) -> float | None:
    """Messages per second we may send: the option, else the protocol's venue limit."""
    if settings.send_rate_limit is not None:
        return settings.send_rate_limit
    return settings.subscription_protocol.send_rate_limit


def effective_max_subscriptions(settings: Settings) -> int | None:
    """Channels per connection: the option, else the protocol's venue limit."""
    if settings.max_subscriptions is not None:
        return settings.max_subscriptions
    return settings.subscription_protocol.max_subscriptions
