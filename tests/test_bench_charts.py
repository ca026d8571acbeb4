"""The benchmark charts (``benchmarks/charts.py``, ``benchmarks/report.py``): the series come from
the same medians as the tables, the SVGs are valid, labelled and reproducible, and the report
shows only the charts that were drawn. matplotlib is the ``[bench]`` extra (also in ``[test]``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from benchmarks import report
from benchmarks.charts import CHARTS, draw
from benchmarks.clients import SPECS
from benchmarks.machine import Load, Machine


def fake_result(messages: int, seconds: float, p50: float) -> dict[str, report.Result]:
    """One client process's figures, in the shape benchmarks.client prints them."""
    return {
        "text": {"messages": messages, "seconds": seconds, "wire_bytes": messages * 40},
        "binary": {"messages": messages // 100, "seconds": seconds, "wire_bytes": messages * 40},
        "echo": {"p50_us": p50, "p99_us": p50 * 3},
    }


def make_run() -> report.Run:
    clients = []
    for index, spec in enumerate(SPECS):
        runs = [fake_result(1000 * (index + 1) * (r + 1), 1.0, 50.0 + index) for r in range(3)]
        clients.append(report.ClientRuns(spec, runs=runs))
    clients[-1] = report.ClientRuns(SPECS[-1], status="install failed: no wheel")
    timings = {"open_seconds": 0.5, "cancel_seconds": 0.2, "fd_limit": 20000}
    memory = [
        ("asyncio", 1000, {"rss_before": 2**20, "rss_after": 40 * 2**20, "per_connection": 20480}),
        ("trio", 1000, {"rss_before": 2**20, "rss_after": 42 * 2**20, "per_connection": 21504}),
        ("asyncio", 10000, {"error": "timed out after 60 s"}),
    ]
    for _, _, result in memory[:2]:
        result.update(timings)
    machine = Machine("Test CPU", "2", "1 GiB", "Linux", "CPython 3.11.7", {}, "abc123")
    return report.Run(
        machine=machine,
        installs=[],
        clients=clients,
        memory=memory,  # type: ignore[arg-type]
        reconnect=[],
        loads=[Load("start", (0.1, 0.2, 0.3))],
        uptime_start="-",
        uptime_end="-",
        elapsed=1.0,
        rounds=3,
    )


def test_the_series_are_the_medians_of_the_tables() -> None:
    run = make_run()
    series = report.chart_series(run)
    assert len(series.bars) == len(SPECS) - 1  # the one that failed to install has no bar
    summaries = {c.spec.name: report.summarize(c) for c in run.clients if not c.status}
    for bar, client in zip(series.bars, run.clients, strict=False):
        assert bar.label == client.spec.title
        assert bar.text == summaries[client.spec.name].median("text")
        assert bar.p50 == summaries[client.spec.name].median("p50")
    assert any(bar.ours for bar in series.bars)
    assert not any(bar.ours for bar in series.bars if "floor" in bar.label)
    assert [(p.backend, p.connections) for p in series.memory] == [
        ("asyncio", 1000),
        ("trio", 1000),
    ]
    assert series.memory[0].rss_after_mib == 40.0
    assert series.memory[0].per_connection_kib == 20.0
    assert "Test CPU" in series.caption


def test_the_charts_are_valid_labelled_and_reproducible(tmp_path: Path) -> None:
    series = report.chart_series(make_run())
    first = draw(series, tmp_path / "a")
    second = draw(series, tmp_path / "b")
    assert [p.name for p in first] == list(CHARTS.values())
    for one, two in zip(first, second, strict=True):
        ET.parse(one)  # well-formed SVG (XML)
        assert one.read_bytes() == two.read_bytes()  # same numbers, same file
    throughput = first[0].read_text()
    assert "managed `async for`, decode=None (asyncio)" in throughput
    assert "msg/s" in throughput
    assert "echo round trip" in first[1].read_text()
    assert "KiB per connection" in first[2].read_text()


def test_the_report_shows_the_charts_that_were_drawn() -> None:
    run = make_run()
    without = report.render(run)
    assert "![" not in without
    shown = report.render(run, ["throughput", "memory"])
    assert f"(charts/{CHARTS['throughput']})" in shown
    assert f"(charts/{CHARTS['memory']})" in shown
    assert CHARTS["latency"] not in shown


DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_docs_show_charts_that_exist() -> None:
    import re

    for page in ("benchmarks.md", "fault-matrix.md"):
        text = (DOCS / page).read_text()
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
            ET.parse(DOCS / target)  # exists, and is well-formed SVG
    assert "(charts/fault-timeline.svg)" in (DOCS / "fault-matrix.md").read_text()


def test_the_timeline_draws_what_it_recorded(tmp_path: Path) -> None:
    from benchmarks.timeline import Record, draw, summary

    from managed_websocket import (
        Connected,
        Disconnected,
        DisconnectReason,
        Outage,
    )

    record = Record(
        arrivals=[i * 0.01 for i in range(100)] + [1.5 + i * 0.01 for i in range(50)],
        events=[
            (0.0, Connected(subprotocol=None, latency=0.001)),
            (1.0, Disconnected(reason=DisconnectReason.NETWORK_ERROR, code=1006, close_reason="")),
            (1.5, Connected(subprotocol=None, latency=0.001)),
        ],
        faults=[(1.0, "drop (FIN)")],
        outages=(Outage(1.0, 1.5, DisconnectReason.NETWORK_ERROR, 1006),),
        end=2.0,
    )
    output = tmp_path / "timeline.svg"
    draw(record, output, "test caption")
    svg = output.read_text()
    ET.parse(output)
    for text in ("drop (FIN)", "NETWORK_ERROR", "test caption", "ticks per 100 ms"):
        assert text in svg, text
    numbers = summary(record)
    assert numbers["ticks"] == 150
    assert numbers["outages"] == [
        {"start": 1.0, "duration": 0.5, "reason": "NETWORK_ERROR", "covered": False}
    ]


def test_the_saved_numbers_redraw_the_same_charts(tmp_path: Path) -> None:
    from benchmarks.charts import load, save

    series = report.chart_series(make_run())
    save(series, tmp_path / "series.json")
    assert load(tmp_path / "series.json") == series
    direct = draw(series, tmp_path / "direct")
    again = draw(load(tmp_path / "series.json"), tmp_path / "again")
    assert [p.read_bytes() for p in direct] == [p.read_bytes() for p in again]
