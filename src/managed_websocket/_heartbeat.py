"""Application-level keepalive: venues that want a ``ping`` message, not a WebSocket ping frame.

:class:`Heartbeat` is what we send every ``interval`` and how its reply looks; :class:`PingReply`
answers pings the server sends (HTX's ``{"ping": ts}``). Both are plain frozen values checked at
construction; the session runs them (``_manager/_control.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Heartbeat", "PingReply"]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Send ``message`` every ``interval`` seconds; expect a reply within ``timeout``.

    ``message`` is a str, bytes, dict or list (sent as JSON), or a zero-argument callable that
    returns one (KuCoin wants a new id each time). An inbound message for which ``is_reply``
    returns True, while a heartbeat waits for its reply, is consumed rather than delivered, and
    its round trip sets ``latency``. No reply within ``timeout``: the connection is replaced
    (``PING_TIMEOUT``), as for a protocol ping. Examples::

        Heartbeat("ping", 20, lambda m: m == "pong")                       # OKX, Bitget
        Heartbeat({"op": "ping"}, 20, lambda m: isinstance(m, dict) and m.get("op") in ("ping", "pong"))
    """

    message: str | bytes | dict[str, Any] | list[Any] | Callable[[], Any]
    interval: float
    is_reply: Callable[[Any], bool]
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not (callable(self.message) or isinstance(self.message, str | bytes | dict | list)):
            raise TypeError(
                "Heartbeat message must be a str, bytes, dict, list or a callable returning "
                f"one, not {type(self.message).__name__}"
            )
        if not callable(self.is_reply):
            raise TypeError("Heartbeat is_reply must be callable")
        for name in ("interval", "timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"Heartbeat {name} must be a number, not {type(value).__name__}")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"Heartbeat {name} must be > 0, got {value!r}")

    def next_message(self) -> Any:
        return self.message() if callable(self.message) else self.message


@dataclass(frozen=True, slots=True)
class PingReply:
    """Answer the server's application-level pings at once.

    An inbound message for which ``is_ping`` returns True is not delivered; ``reply(message)``
    is sent back (a str, bytes, dict or list), even while the consumer is slow and the queue is
    full. For HTX::

        PingReply(lambda m: isinstance(m, dict) and "ping" in m, lambda m: {"pong": m["ping"]})
    """

    is_ping: Callable[[Any], bool]
    reply: Callable[[Any], Any]

    def __post_init__(self) -> None:
        if not (callable(self.is_ping) and callable(self.reply)):
            raise TypeError("PingReply is_ping and reply must be callable")
