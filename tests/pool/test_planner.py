"""The pool's pure parts: placement, the connect-rate schedule and the rotation stagger."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from managed_websocket._pool._placement import Placement, PlacementFull
from managed_websocket._pool._rate import DialSchedule
from managed_websocket._pool._stagger import plan_rotations


def test_channels_fill_shards_up_to_the_cap_then_open_new_ones() -> None:
    placement = Placement(cap=3)
    assert placement.assign(["a", "b"]) == {0: ["a", "b"]}
    assert placement.assign(["c", "d", "e", "f", "g", "h"]) == {
        0: ["c"],
        1: ["d", "e", "f"],
        2: ["g", "h"],
    }
    assert placement.shards == {0: ("a", "b", "c"), 1: ("d", "e", "f"), 2: ("g", "h")}


def test_duplicates_and_placed_channels_are_not_placed_twice() -> None:
    placement = Placement(cap=2)
    placement.assign(["a", "a", "b"])
    assert placement.assign(["b", "c"]) == {1: ["c"]}


def test_release_frees_room_that_the_next_assign_fills_first() -> None:
    placement = Placement(cap=2)
    placement.assign(["a", "b", "c", "d"])
    assert placement.release(["a", "zzz"]) == {0: ["a"]}
    assert placement.assign(["e"]) == {0: ["e"]}
    placement.release(["c", "d"])
    assert placement.empty() == [1]


def test_a_closed_shard_returns_its_channels_and_its_index_is_never_reused() -> None:
    placement = Placement(cap=2)
    placement.assign(["a", "b", "c"])
    assert placement.close(0) == ["a", "b"]
    assert placement.owner("a") is None
    assert placement.assign(["a", "b", "x"]) == {1: ["a"], 2: ["b", "x"]}


def test_max_shards_refuses_the_whole_request_and_changes_nothing() -> None:
    placement = Placement(cap=2, max_shards=2)
    placement.assign(["a", "b", "c"])
    with pytest.raises(PlacementFull) as caught:
        placement.assign(["d", "e"])
    assert caught.value.channels == ("d", "e")
    assert "max_connections" in str(caught.value)
    assert placement.shards == {0: ("a", "b"), 1: ("c",)}
    assert placement.assign(["d"]) == {1: ["d"]}


@given(
    cap=st.integers(1, 5),
    steps=st.lists(
        st.tuples(st.booleans(), st.lists(st.sampled_from("abcdefghijkl"), max_size=6)),
        max_size=20,
    ),
)
def test_no_shard_ever_exceeds_the_cap_and_each_channel_has_one_owner(
    cap: int, steps: list[tuple[bool, list[str]]]
) -> None:
    placement = Placement(cap=cap)
    subscribed: set[str] = set()
    for add, channels in steps:
        if add:
            placement.assign(channels)
            subscribed |= set(channels)
        else:
            placement.release(channels)
            subscribed -= set(channels)
        shards = placement.shards
        assert all(len(chans) <= cap for chans in shards.values())
        placed = [c for chans in shards.values() for c in chans]
        assert sorted(placed) == sorted(subscribed)


def test_dials_are_spaced_evenly_with_a_margin() -> None:
    schedule = DialSchedule(5, 1.0)
    slots = [schedule.reserve(10.0) for _ in range(6)]
    assert slots[0] == 10.0
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert all(gap == pytest.approx(0.21) for gap in gaps)
    assert slots[5] - slots[0] > 1.0  # never count + 1 dials within `seconds`


def test_a_late_caller_gets_a_slot_now_and_spacing_goes_on_from_there() -> None:
    schedule = DialSchedule(2, 1.0)
    assert schedule.reserve(0.0) == 0.0
    assert schedule.reserve(0.1) == pytest.approx(0.525)
    assert schedule.reserve(50.0) == 50.0
    assert schedule.reserve(50.0) == pytest.approx(50.525)


@given(
    count=st.integers(1, 20),
    seconds=st.floats(0.01, 600),
    arrivals=st.lists(st.floats(0, 1000), min_size=1, max_size=60),
)
def test_no_window_of_seconds_holds_more_than_count_dials(
    count: int, seconds: float, arrivals: list[float]
) -> None:
    schedule = DialSchedule(count, seconds)
    slots = [schedule.reserve(now) for now in sorted(arrivals)]
    for i in range(count, len(slots)):
        assert slots[i] - slots[i - count] > seconds


def test_rotations_due_together_are_spread_one_window_apart_never_later_than_due() -> None:
    due = {0: 100.0, 1: 100.2, 2: 100.4, 3: 100.6}
    plan = plan_rotations(due, gap=25.0, now=0.0)
    assert [shard for _, shard in plan] == [0, 1, 2, 3]
    times = [at for at, _ in plan]
    assert times == pytest.approx([25.6, 50.6, 75.6, 100.6])
    assert all(at <= due[shard] for at, shard in plan)


def test_a_rotation_never_starts_within_a_window_of_the_previous_one() -> None:
    plan = plan_rotations({0: 10.0, 1: 500.0}, gap=50.0, now=10.0, last_started=0.0)
    assert plan[0] == (50.0, 0)
    plan = plan_rotations({0: 10.0}, gap=5.0, now=10.0, last_started=9.0)
    assert plan == [(14.0, 0)]


@given(
    due=st.dictionaries(st.integers(0, 30), st.floats(0, 1000), min_size=1, max_size=30),
    now=st.floats(0, 100),
)
def test_planned_rotations_are_at_least_a_gap_apart(due: dict[int, float], now: float) -> None:
    gap = 1000.0 / len(due)
    plan = plan_rotations(due, gap=gap, now=now)
    times = [at for at, _ in plan]
    assert times[0] >= now
    assert all(b - a >= gap - 1e-6 for a, b in itertools.pairwise(times))
    assert sorted(shard for _, shard in plan) == sorted(due)
