"""send_rate_limit's pacing: pure arithmetic, no clock but the one passed in."""

from __future__ import annotations

import pytest

from managed_websocket._ratelimit import SendPacer


def test_a_burst_goes_at_once_then_the_rest_waits_for_the_window_in_order() -> None:
    pacer = SendPacer(5.0)
    assert [pacer.reserve(100.0) for _ in range(5)] == [0.0] * 5
    # Concurrent senders queue up, none is refused: the next five a second later, and so on.
    assert [pacer.reserve(100.0) for _ in range(6)] == [1.0] * 5 + [2.0]


def test_sends_spread_out_over_time_are_not_delayed() -> None:
    pacer = SendPacer(2.0)
    assert [pacer.reserve(t) for t in (0.0, 0.6, 1.2, 1.8, 2.4)] == [0.0] * 5
    assert pacer.reserve(2.5) == pytest.approx(0.3)  # 1.8, 2.4: the next waits until 2.8


@pytest.mark.parametrize("rate", [0.5, 1.0, 2.5, 5.0, 20.0])
def test_no_window_of_one_second_ever_holds_more_than_the_rate(rate: float) -> None:
    pacer = SendPacer(rate)
    asks = [n * 0.07 for n in range(200)]  # asking faster than the rate
    times = [t + pacer.reserve(t) for t in asks]
    assert times == sorted(times)  # in the order asked
    window = max(1.0, 1.0 / rate)
    for start in times:
        in_window = sum(start <= t < start + window - 1e-9 for t in times)
        assert in_window <= max(int(rate), 1)


def test_a_rate_must_be_positive_and_finite() -> None:
    for rate in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="rate must be > 0"):
            SendPacer(rate)
