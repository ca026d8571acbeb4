"""The demo's report (``_demo.py``): the ledger table has headers, says what "covered" means,
never prints "code None", pluralises, and the run names its file and shows a sample message."""

from __future__ import annotations

import subprocess
import sys

from managed_websocket import DisconnectReason, Outage
from managed_websocket._demo import COVERED, ledger_table, plural

R = DisconnectReason


def test_plural() -> None:
    assert [plural(n, "tick") for n in (0, 1, 2)] == ["0 ticks", "1 tick", "2 ticks"]


def test_the_ledger_has_a_header_row_and_explains_covered_rows() -> None:
    outages = (
        Outage(10.0, 10.25, R.NETWORK_ERROR, 1006, first_missing=5, last_missing=5),
        Outage(12.0, 12.01, R.USER_REQUESTED, 1000, covered=True),
        Outage(14.0, 14.5, R.PING_TIMEOUT, None, first_missing=20, last_missing=29),
        Outage(16.0, None, R.SERVER_CLOSED, 1013),
    )
    header, drop, rotation, ping, still_open, explanation = ledger_table(outages)
    assert header.split() == ["started", "duration", "cause", "code", "ticks", "missed"]
    assert "250.0 ms" in drop
    assert "1 tick: seq 5..5" in drop
    assert "(covered)" in rotation
    assert rotation.rstrip().endswith("none")
    assert "None" not in ping  # no close frame: "-", not "code None"
    assert "10 ticks: seq 20..29" in ping
    assert "open" in still_open
    assert explanation == COVERED


def test_without_a_covered_row_there_is_no_explanation_and_no_rows_say_so() -> None:
    lines = ledger_table((Outage(1.0, 2.0, R.NETWORK_ERROR, 1006),))
    assert len(lines) == 2
    assert COVERED not in lines
    assert ledger_table(()) == ["no outages"]


def test_wall_clock_start_is_shown_when_known() -> None:
    import time

    at = time.mktime((2024, 1, 2, 3, 4, 5, 0, 0, -1)) + 0.25
    (_, row) = ledger_table((Outage(1.0, 2.0, R.NETWORK_ERROR, 1006, started_at=at),))
    assert row.startswith("03:04:05.250")


def test_a_short_demo_run_names_its_file_and_shows_a_sample_and_the_ledger_header() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "managed_websocket", "demo", "--seconds", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    err = done.stderr
    assert "the code it runs: " in err
    assert "_demo.py" in err
    assert 'sample message: {"type": "tick", "seq": ' in err
    assert "started" in err
    assert "ticks missed" in err
    assert "code None" not in err
    assert " 1 overlap messages" not in err
    assert "1 duplicates" not in err
