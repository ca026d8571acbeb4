"""Unit tests, no sockets: the outage ledger (``_ledger.py``) — lost/restored/rotated records,
sequence observation, and which outage a gap is attributed to.

The same bookkeeping against a real server and real drops is in
``tests/manager/test_events_and_ledger.py``.
"""

from __future__ import annotations

import dataclasses

import pytest

from managed_websocket import DisconnectReason, Outage
from managed_websocket._ledger import OutageLedger

R = DisconnectReason


def test_a_new_ledger_is_empty_and_restoring_without_an_outage_records_nothing() -> None:
    ledger = OutageLedger()
    assert ledger.records == ()
    ledger.restored(1.0)  # the first connection: no outage before it
    assert ledger.records == ()


def test_lost_opens_an_outage_and_restored_closes_it() -> None:
    ledger = OutageLedger()
    ledger.lost(10.0, R.NETWORK_ERROR, 1006)
    (open_record,) = ledger.records
    assert open_record == Outage(start=10.0, end=None, reason=R.NETWORK_ERROR, code=1006)
    assert open_record.duration is None
    ledger.restored(10.25)
    (record,) = ledger.records
    assert (record.start, record.end, record.duration) == (10.0, 10.25, 0.25)
    assert (record.reason, record.code, record.covered) == (R.NETWORK_ERROR, 1006, False)
    assert (record.first_missing, record.last_missing) == (None, None)


def test_failed_reconnects_do_not_split_an_outage() -> None:
    """lost() while one is open keeps the first start and reason."""
    ledger = OutageLedger()
    ledger.lost(1.0, R.SERVER_CLOSED, 1001)
    ledger.lost(2.0, R.NETWORK_ERROR, 1006)
    ledger.restored(3.0)
    (record,) = ledger.records
    assert (record.start, record.end, record.reason, record.code) == (
        1.0,
        3.0,
        R.SERVER_CLOSED,
        1001,
    )


def test_records_are_in_order_with_the_open_one_last() -> None:
    ledger = OutageLedger()
    ledger.lost(1.0, R.NETWORK_ERROR, 1006)
    ledger.restored(2.0)
    ledger.rotated(3.0, 3.5)
    ledger.lost(4.0, R.PING_TIMEOUT, None)
    starts = [r.start for r in ledger.records]
    assert starts == [1.0, 3.0, 4.0]
    assert ledger.records[-1].end is None


def test_records_are_frozen_snapshots() -> None:
    ledger = OutageLedger()
    ledger.lost(1.0, R.NETWORK_ERROR, 1006)
    snapshot = ledger.records
    ledger.restored(2.0)
    assert snapshot[0].end is None  # the old snapshot did not change
    with pytest.raises(dataclasses.FrozenInstanceError):
        ledger.records[0].end = 5.0  # type: ignore[misc]


def test_a_rotation_is_a_covered_record_without_a_missing_range() -> None:
    ledger = OutageLedger()
    ledger.rotated(5.0, 5.2)
    (record,) = ledger.records
    assert record.covered
    assert (record.start, record.end) == (5.0, 5.2)
    assert (record.reason, record.code) == (R.SCHEDULED, 1000)
    assert (record.first_missing, record.last_missing) == (None, None)
    # A rotation does not claim a gap that follows it.
    assert ledger.observe(1) is None
    assert ledger.observe(4) == (2, 3)
    assert ledger.records[0].first_missing is None


def test_observe_reports_jumps_only() -> None:
    ledger = OutageLedger()
    assert ledger.observe(7) is None  # the first number: nothing to compare with
    assert ledger.observe(8) is None
    assert ledger.observe(11) == (9, 10)
    assert ledger.observe(11) is None  # a repeat is not a gap
    assert ledger.observe(5) is None  # nor is going back
    assert ledger.observe(6) is None
    assert ledger.observe(8) == (7, 7)  # measured from the last number seen


def test_a_gap_across_an_outage_is_attributed_to_it() -> None:
    ledger = OutageLedger()
    ledger.observe(1)
    ledger.observe(2)
    ledger.lost(1.0, R.NETWORK_ERROR, 1006)
    ledger.restored(1.5)
    assert ledger.observe(9) == (3, 8)
    (record,) = ledger.records
    assert (record.first_missing, record.last_missing) == (3, 8)


def test_only_the_first_number_after_an_outage_can_close_its_gap() -> None:
    ledger = OutageLedger()
    ledger.observe(1)
    ledger.lost(1.0, R.NETWORK_ERROR, 1006)
    ledger.restored(2.0)
    assert ledger.observe(2) is None  # nothing was lost in this outage
    assert ledger.observe(5) == (3, 4)  # a gap within the new connection
    (record,) = ledger.records
    assert (record.first_missing, record.last_missing) == (None, None)


def test_each_gap_goes_to_its_own_outage() -> None:
    ledger = OutageLedger()
    ledger.observe(0)
    ledger.lost(1.0, R.NETWORK_ERROR, 1006)
    ledger.restored(1.1)
    ledger.observe(4)  # 1..3 lost in the first outage
    ledger.observe(5)
    ledger.observe(8)  # 6..7: within the connection, nobody's outage
    ledger.lost(2.0, R.SERVER_CLOSED, 1012)
    ledger.rotated(2.5, 2.6)  # unusual order, but a rotation record must not take the gap
    ledger.restored(3.0)
    ledger.observe(20)  # 9..19 lost in the second outage
    first, rotation, second = ledger.records
    assert (first.first_missing, first.last_missing) == (1, 3)
    assert rotation.covered
    assert rotation.first_missing is None
    assert (second.start, second.end) == (2.0, 3.0)
    assert (second.first_missing, second.last_missing) == (9, 19)


def test_a_gap_before_any_outage_is_attributed_to_nothing() -> None:
    ledger = OutageLedger()
    ledger.observe(1)
    assert ledger.observe(3) == (2, 2)
    assert ledger.records == ()


def test_an_outage_without_sequence_numbers_keeps_no_range() -> None:
    ledger = OutageLedger()
    ledger.lost(1.0, R.NETWORK_ERROR, 1006)
    ledger.restored(2.0)
    assert ledger.observe(100) is None  # the first number ever: no gap is known
    assert ledger.records[0].first_missing is None


def test_both_clocks_are_kept_and_a_rotation_keeps_its_reason() -> None:
    ledger = OutageLedger()
    ledger.lost(10.0, R.NETWORK_ERROR, 1006, wall=1_700_000_000.0)
    assert ledger.records[0].started_at == 1_700_000_000.0
    assert ledger.records[0].ended_at is None
    ledger.restored(10.5, wall=1_700_000_000.5)
    ledger.rotated(20.0, 20.2, R.USER_REQUESTED, started_at=1_700_000_010.0, ended_at=1.7e9 + 10.2)
    drop, rotation = ledger.records
    assert (drop.start, drop.end, drop.started_at, drop.ended_at) == (
        10.0,
        10.5,
        1_700_000_000.0,
        1_700_000_000.5,
    )
    assert (rotation.reason, rotation.covered, rotation.started_at) == (
        R.USER_REQUESTED,
        True,
        1_700_000_010.0,
    )
    # Without wall times (the pure API's default) they stay None.
    plain = OutageLedger()
    plain.lost(1.0, R.NETWORK_ERROR, 1006)
    plain.restored(2.0)
    assert (plain.records[0].started_at, plain.records[0].ended_at) == (None, None)
