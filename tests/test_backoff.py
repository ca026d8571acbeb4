from __future__ import annotations

import pytest

from managed_websocket._backoff import (
    exhausted,
    jittered,
    next_attempt,
    nominal_delay,
    reconnect_delay,
)
from managed_websocket._models import ReconnectStrategy

EXPONENTIAL = ReconnectStrategy.EXPONENTIAL_BACKOFF


def test_exponential_sequence_is_capped() -> None:
    delays = [nominal_delay(EXPONENTIAL, n, base=1.0, maximum=60.0) for n in range(1, 9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]


@pytest.mark.parametrize(
    ("strategy", "attempt", "expected"),
    [
        (ReconnectStrategy.IMMEDIATE, 1, 0.0),
        (ReconnectStrategy.IMMEDIATE, 50, 0.0),
        (ReconnectStrategy.FIXED_DELAY, 1, 2.5),
        (ReconnectStrategy.FIXED_DELAY, 50, 2.5),
        (ReconnectStrategy.CALLBACK_CONTROLLED, 1, 2.5),
        (ReconnectStrategy.CALLBACK_CONTROLLED, 7, 2.5),
        (EXPONENTIAL, 1, 2.5),
        (EXPONENTIAL, 3, 10.0),
        (EXPONENTIAL, 4, 20.0),
        (EXPONENTIAL, 5, 30.0),
    ],
)
def test_nominal_delay(strategy: ReconnectStrategy, attempt: int, expected: float) -> None:
    assert nominal_delay(strategy, attempt, base=2.5, maximum=30.0) == expected


@pytest.mark.parametrize("attempt", [1024, 1025, 10_000, 10**100])
def test_exponential_does_not_overflow_for_huge_attempts(attempt: int) -> None:
    assert nominal_delay(EXPONENTIAL, attempt, base=1.0, maximum=60.0) == 60.0
    assert nominal_delay(EXPONENTIAL, attempt, base=1e-300, maximum=60.0) == 60.0


def test_exponential_with_zero_base_stays_zero() -> None:
    assert nominal_delay(EXPONENTIAL, 10**6, base=0.0, maximum=60.0) == 0.0


def test_exponential_maximum_below_base_wins() -> None:
    assert nominal_delay(EXPONENTIAL, 1, base=10.0, maximum=3.0) == 3.0


@pytest.mark.parametrize("attempt", [0, -1])
@pytest.mark.parametrize("strategy", list(ReconnectStrategy))
def test_nominal_delay_rejects_attempt_below_one(strategy: ReconnectStrategy, attempt: int) -> None:
    with pytest.raises(ValueError, match=rf"^attempt must be >= 1, got {attempt}$"):
        nominal_delay(strategy, attempt, base=1.0, maximum=60.0)


@pytest.mark.parametrize(
    ("delay", "jitter", "rand", "expected"),
    [
        (10.0, 0.5, 0.0, 10.0),  # rand 0: the nominal delay, the upper bound
        (10.0, 0.5, 0.5, 7.5),
        (10.0, 0.5, 0.999999, 5.000005),  # rand -> 1: approaches d * (1 - j)
        (10.0, 0.0, 0.7, 10.0),  # no jitter: exact
        (10.0, 1.0, 0.25, 7.5),
        (0.0, 0.5, 0.5, 0.0),
    ],
)
def test_jittered(delay: float, jitter: float, rand: float, expected: float) -> None:
    assert jittered(delay, jitter, rand) == pytest.approx(expected, rel=1e-12, abs=0.0)


@pytest.mark.parametrize("rand", [0.0, 0.1, 0.5, 0.9, 0.999_999_999])
@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.5, 1.0])
def test_jittered_stays_within_bounds(jitter: float, rand: float) -> None:
    result = jittered(8.0, jitter, rand)
    assert 8.0 * (1 - jitter) <= result <= 8.0


def test_reconnect_delay_applies_jitter_from_the_injected_rng() -> None:
    delay = reconnect_delay(EXPONENTIAL, 3, base=1.0, maximum=60.0, jitter=0.5, rng=lambda: 0.5)
    assert delay == 3.0  # nominal 4, minus 4 * 0.5 * 0.5


def test_reconnect_delay_floor_wins_over_a_smaller_delay() -> None:
    delay = reconnect_delay(
        EXPONENTIAL, 1, base=1.0, maximum=60.0, jitter=0.5, floor=30.0, rng=lambda: 0.0
    )
    assert delay == 30.0


def test_reconnect_delay_floor_is_not_jittered() -> None:
    # A 1013 floor of 30 s with the largest possible jitter draw is still exactly 30 s.
    delay = reconnect_delay(
        ReconnectStrategy.IMMEDIATE,
        1,
        base=1.0,
        maximum=60.0,
        jitter=1.0,
        floor=30.0,
        rng=lambda: 0.999,
    )
    assert delay == 30.0


def test_reconnect_delay_larger_delay_wins_over_floor() -> None:
    delay = reconnect_delay(
        EXPONENTIAL, 7, base=1.0, maximum=60.0, jitter=0.0, floor=30.0, rng=lambda: 0.0
    )
    assert delay == 60.0


def test_reconnect_delay_default_rng_stays_in_bounds() -> None:
    for _ in range(200):
        delay = reconnect_delay(EXPONENTIAL, 4, base=1.0, maximum=60.0, jitter=0.5)
        assert 4.0 <= delay <= 8.0


@pytest.mark.parametrize(
    ("attempt", "connected_for", "expected"),
    [
        (5, None, 6),  # the dial failed
        (1, None, 2),
        (5, 0.0, 6),  # accepted, then dropped at once: keep backing off
        (5, 59.999, 6),
        (5, 60.0, 1),  # exactly stable_time: reset
        (5, 3600.0, 1),
        (1, 60.0, 1),
    ],
)
def test_next_attempt(attempt: int, connected_for: float | None, expected: int) -> None:
    assert next_attempt(attempt, connected_for, 60.0) == expected


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "expected"),
    [
        (1, None, False),
        (10**9, None, False),
        (1, 0, True),
        (1, 1, False),
        (2, 1, True),
        (10, 10, False),
        (11, 10, True),
    ],
)
def test_exhausted(attempt: int, max_attempts: int | None, expected: bool) -> None:
    assert exhausted(attempt, max_attempts) is expected
