from __future__ import annotations

import math

import pytest

from managed_websocket._alerts import AlertThrottle


@pytest.mark.parametrize("now", [0.0, 5.0, -100.0, 1e9])
def test_first_event_fires_immediately_whatever_the_clock(now: float) -> None:
    # The replaced system started at "last alert = 0.0" and swallowed this one (its defect B12).
    throttle = AlertThrottle(300.0)
    assert throttle.record(now) == 1
    assert throttle.pending == 0


def test_events_inside_the_interval_are_aggregated() -> None:
    throttle = AlertThrottle(300.0)
    assert throttle.record(5.0) == 1
    assert [throttle.record(t) for t in (6.0, 100.0, 304.999)] == [None, None, None]
    assert throttle.pending == 3
    assert throttle.record(305.0) == 4  # the three held events plus this one
    assert throttle.pending == 0
    assert throttle.record(306.0) is None  # the window restarts at the last alert


def test_at_most_one_alert_per_interval_in_a_storm() -> None:
    throttle = AlertThrottle(10.0)
    fired = [(t, n) for t in range(100) if (n := throttle.record(float(t))) is not None]
    assert fired == [
        (0, 1),
        (10, 10),
        (20, 10),
        (30, 10),
        (40, 10),
        (50, 10),
        (60, 10),
        (70, 10),
        (80, 10),
        (90, 10),
    ]
    assert throttle.pending == 9


def test_flush_reports_the_tail_once_the_interval_has_passed() -> None:
    throttle = AlertThrottle(60.0)
    throttle.record(0.0)
    throttle.record(1.0)
    throttle.record(2.0)
    assert throttle.flush_deadline() == 60.0
    assert throttle.flush(59.9) is None
    assert throttle.pending == 2
    assert throttle.flush(60.0) == 2
    assert throttle.pending == 0
    assert throttle.flush_deadline() is None


def test_flush_with_nothing_pending_returns_none() -> None:
    throttle = AlertThrottle(60.0)
    assert throttle.flush(0.0) is None
    assert throttle.flush_deadline() is None
    throttle.record(0.0)
    assert throttle.flush(1000.0) is None


def test_flush_restarts_the_window() -> None:
    throttle = AlertThrottle(60.0)
    throttle.record(0.0)
    throttle.record(1.0)
    assert throttle.flush(70.0) == 1
    assert throttle.record(80.0) is None
    assert throttle.record(130.0) == 2


def test_zero_interval_alerts_every_event() -> None:
    throttle = AlertThrottle(0.0)
    assert [throttle.record(1.0) for _ in range(3)] == [1, 1, 1]


@pytest.mark.parametrize("interval", [-1.0, math.nan])
def test_invalid_interval(interval: float) -> None:
    with pytest.raises(ValueError, match="^interval must be >= 0"):
        AlertThrottle(interval)


def test_repr() -> None:
    throttle = AlertThrottle(30.0)
    throttle.record(0.0)
    throttle.record(1.0)
    assert repr(throttle) == "AlertThrottle(interval=30.0, pending=1)"
    assert throttle.interval == 30.0
