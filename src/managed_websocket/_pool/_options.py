"""The pool's own keyword arguments, checked at construction (the error names the option)."""

from __future__ import annotations

import math
import numbers

__all__ = ["check_connect_rate", "check_grace", "check_max_connections", "check_per_connection"]


def check_per_connection(value: object) -> int:
    return _integer("max_subscriptions_per_connection", value)


def check_max_connections(value: object) -> int | None:
    return None if value is None else _integer("max_connections", value)


def check_connect_rate(value: object) -> tuple[int, float]:
    name = "connect_rate"
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(f"{name} must be a (count, seconds) pair, not {value!r}")
    count = _integer(f"{name} count", value[0])
    seconds = value[1]
    if isinstance(seconds, bool) or not isinstance(seconds, numbers.Real):
        raise TypeError(f"{name} seconds must be a number, not {type(seconds).__name__}")
    number = float(seconds)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} seconds must be > 0 and finite, got {seconds!r}")
    return count, number


def check_grace(value: object) -> float:
    name = "empty_shard_grace"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    number = float(value)
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be >= 0 and finite, got {value!r}")
    return number


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return int(value)
