"""Reconnect policy as pure functions: how long attempt n waits, and when the counter resets.

The supervisor only sleeps and dials; every number it waits comes from here (SPEC sections 3 and 5).
No I/O and no clock: randomness is injected as ``rng`` so tests can assert exact delays.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._models import ReconnectStrategy

if TYPE_CHECKING:
    from ._settings import Settings

__all__ = [
    "backoff_delay",
    "exhausted",
    "jittered",
    "next_attempt",
    "nominal_delay",
    "reconnect_delay",
]

# 2.0 ** 1024 raises OverflowError; with the exponent capped, a huge product is inf (a float
# multiplication overflows quietly) and min() brings it back to ``maximum``.
_MAX_EXPONENT = 1023


def nominal_delay(
    strategy: ReconnectStrategy, attempt: int, *, base: float, maximum: float
) -> float:
    """The delay before reconnect attempt ``attempt`` (>= 1), before jitter (SPEC section 3).

    IMMEDIATE waits 0; FIXED_DELAY waits ``base``; EXPONENTIAL_BACKOFF waits
    ``min(base * 2 ** (attempt - 1), maximum)``; CALLBACK_CONTROLLED waits ``base``: the supervisor
    asks ``should_reconnect`` first, and this is the fallback when the callback gives no delay.

    Raises :class:`ValueError` when ``attempt`` < 1.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if strategy is ReconnectStrategy.IMMEDIATE:
        return 0.0
    if strategy is ReconnectStrategy.EXPONENTIAL_BACKOFF:
        return min(base * 2.0 ** min(attempt - 1, _MAX_EXPONENT), maximum)
    return base  # FIXED_DELAY, CALLBACK_CONTROLLED


def jittered(delay: float, jitter: float, rand: float) -> float:
    """Spread ``delay`` over ``[delay * (1 - jitter), delay]``; ``rand`` is the caller's draw in [0, 1).

    Jitter only ever shortens a delay, so the nominal delay stays an upper bound (SPEC section 3).
    """
    return delay * (1.0 - jitter * rand)


def reconnect_delay(
    strategy: ReconnectStrategy,
    attempt: int,
    *,
    base: float,
    maximum: float,
    jitter: float,
    floor: float = 0.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """The seconds to sleep before reconnect attempt ``attempt``: jittered, then raised to ``floor``.

    ``floor`` is ``server_unavailable_delay`` after a 1013 close, or a ``Retry-After`` value (SPEC
    section 5). The server asked for it, so it is not jittered: jitter would undercut it.
    """
    delay = jittered(nominal_delay(strategy, attempt, base=base, maximum=maximum), jitter, rng())
    return max(delay, floor)


def next_attempt(attempt: int, connected_for: float | None, stable_time: float) -> int:
    """The attempt counter after a connection ends.

    ``connected_for`` is how long the connection stayed up, or None when the dial itself failed.
    The counter restarts at 1 only after ``stable_time`` of uptime (SPEC section 5), so a server
    that accepts and then drops us at once keeps backing off instead of being hammered.
    """
    if connected_for is not None and connected_for >= stable_time:
        return 1
    return attempt + 1


def exhausted(attempt: int, max_attempts: int | None) -> bool:
    """True when attempt ``attempt`` is past ``max_attempts`` (None: never give up)."""
    return max_attempts is not None and attempt > max_attempts


def backoff_delay(settings: Settings, attempt: int, *, floor: float = 0.0) -> float:
    """:func:`reconnect_delay` for ``attempt`` with the strategy and delays of ``settings``."""
    return reconnect_delay(
        settings.reconnect_strategy,
        attempt,
        base=settings.reconnect_delay,
        maximum=settings.max_reconnect_delay,
        jitter=settings.reconnect_jitter,
        floor=floor,
    )
