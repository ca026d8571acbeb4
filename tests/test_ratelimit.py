"""The send_rate_limit token bucket: pure arithmetic, no clock but the one passed in."""

from __future__ import annotations

import pytest

from managed_websocket._ratelimit import TokenBucket


def test_a_full_bucket_lets_a_burst_go_then_paces_the_rest_in_order() -> None:
    bucket = TokenBucket(5.0, now=100.0)
    assert [bucket.reserve(100.0) for _ in range(5)] == [0.0] * 5
    # The next three wait 0.2, 0.4, 0.6 s: concurrent senders queue up, none is refused.
    assert [round(bucket.reserve(100.0), 9) for _ in range(3)] == [0.2, 0.4, 0.6]


def test_tokens_come_back_at_the_rate_and_never_beyond_the_burst() -> None:
    bucket = TokenBucket(2.0, now=0.0)
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.5) == 0.0  # one token back after 0.5 s
    assert bucket.reserve(0.5) == pytest.approx(0.5)
    later = TokenBucket(2.0, now=0.0)
    for _ in range(2):
        later.reserve(0.0)
    # An hour idle refills two tokens, not 7,200.
    assert [later.reserve(3600.0) for _ in range(2)] == [0.0, 0.0]
    assert later.reserve(3600.0) == pytest.approx(0.5)


def test_in_any_window_sends_stay_within_burst_plus_rate_times_window() -> None:
    bucket = TokenBucket(5.0, now=0.0)
    times = [bucket.reserve(0.0) for _ in range(50)]  # all ask at t=0, send when told
    for start in times:
        in_window = sum(start <= t < start + 1.0 for t in times)
        assert in_window <= 5 + 5  # burst + rate * 1 s


def test_a_fractional_rate_still_allows_one_message() -> None:
    bucket = TokenBucket(0.1, now=0.0)  # one message every 10 s
    assert bucket.reserve(0.0) == 0.0
    assert bucket.reserve(0.0) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="rate must be > 0"):
        TokenBucket(0.0, now=0.0)
