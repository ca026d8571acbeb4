"""SVG charts of one benchmark run (matplotlib: the ``[bench]`` extra, never the core).

Pure drawing: :func:`draw` takes the series that ``report.chart_series`` extracted from a run and
writes one SVG per chart. The files are reproducible for the same numbers (no date in the
metadata, a fixed hash salt), so a re-run that measured the same changes nothing. The suite also
saves the series as JSON beside the charts, so they can be redrawn without measuring again:

    python -m benchmarks.charts [docs/charts/benchmarks-series.json]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["CHARTS", "SERIES_FILE", "Bar", "MemoryPoint", "Series", "draw", "load", "save"]

#: The charts, by file name (under docs/charts/), in the order of the report.
CHARTS = {
    "throughput": "benchmarks-throughput.svg",
    "latency": "benchmarks-latency.svg",
    "memory": "benchmarks-memory.svg",
}


@dataclass(frozen=True)
class Bar:
    label: str  # "managed `async for`, decode=None (trio)"
    text: float | None  # msg/s
    binary: float | None  # MB/s
    p50: float | None  # µs
    p99: float | None  # µs
    ours: bool  # managed-websocket (highlighted)


@dataclass(frozen=True)
class MemoryPoint:
    backend: str
    connections: int
    rss_after_mib: float
    per_connection_kib: float


@dataclass(frozen=True)
class Series:
    bars: Sequence[Bar]
    memory: Sequence[MemoryPoint]
    caption: str  # the run: date, machine, rounds


#: The numbers behind the charts, saved beside them by the suite.
SERIES_FILE = "benchmarks-series.json"

OURS, PEER, TAIL = "#1f77b4", "#9e9e9e", "#ffb74d"


def save(series: Series, path: Path) -> None:
    data = {
        "caption": series.caption,
        "bars": [asdict(bar) for bar in series.bars],
        "memory": [asdict(point) for point in series.memory],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def load(path: Path) -> Series:
    data = json.loads(path.read_text(encoding="utf-8"))
    return Series(
        bars=[Bar(**bar) for bar in data["bars"]],
        memory=[MemoryPoint(**point) for point in data["memory"]],
        caption=data["caption"],
    )


def _setup() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "managed-websocket", "svg.fonttype": "none"})
    return plt


def _save(figure: Any, path: Path) -> None:
    figure.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")


def _hbar(axis: Any, bars: Sequence[Bar], values: list[float], title: str, unit: str) -> None:
    positions = list(range(len(bars)))
    colours = [OURS if bar.ours else PEER for bar in bars]
    axis.barh(positions, values, color=colours)
    axis.set_yticks(positions, [bar.label for bar in bars], fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel(unit)
    axis.set_title(title, fontsize=10)
    axis.grid(axis="x", which="major", alpha=0.3)


def draw(series: Series, directory: Path) -> list[Path]:
    """Write the three charts into ``directory``; return their paths."""
    plt = _setup()
    directory.mkdir(parents=True, exist_ok=True)
    written = []

    measured = [bar for bar in series.bars if bar.text is not None and bar.binary is not None]
    figure, axes = plt.subplots(1, 2, figsize=(11, 0.32 * len(measured) + 1.6), sharey=True)
    _hbar(axes[0], measured, [b.text or 0.0 for b in measured], "text messages", "msg/s (log)")
    _hbar(axes[1], measured, [b.binary or 0.0 for b in measured], "binary messages", "MB/s (log)")
    axes[0].invert_yaxis()  # the y axis is shared: invert it once, the table's order top down
    figure.suptitle(f"Throughput, median of the runs (blue: managed-websocket)\n{series.caption}")
    path = directory / CHARTS["throughput"]
    _save(figure, path)
    plt.close(figure)
    written.append(path)

    echo = [bar for bar in series.bars if bar.p50 is not None and bar.p99 is not None]
    figure, axis = plt.subplots(figsize=(8, 0.32 * len(echo) + 1.6))
    positions = list(range(len(echo)))
    axis.barh([p - 0.2 for p in positions], [b.p50 or 0.0 for b in echo], height=0.4,
              color=[OURS if b.ours else PEER for b in echo])  # fmt: skip
    axis.barh([p + 0.2 for p in positions], [b.p99 or 0.0 for b in echo], height=0.4,
              color=TAIL)  # fmt: skip
    axis.set_yticks(positions, [b.label for b in echo], fontsize=8)
    axis.invert_yaxis()
    axis.set_xscale("log")  # tails can be 10-100x the median on a busy machine
    axis.set_xlabel("echo round trip, µs (log)")
    from matplotlib.patches import Patch

    axis.legend(
        handles=[
            Patch(color=OURS, label="p50, managed-websocket"),
            Patch(color=PEER, label="p50, floors and peers"),
            Patch(color=TAIL, label="p99"),
        ],
        loc="lower right",
        fontsize=8,
    )
    axis.grid(axis="x", alpha=0.3)
    axis.set_title(f"Echo latency, median of the runs\n{series.caption}", fontsize=10)
    path = directory / CHARTS["latency"]
    _save(figure, path)
    plt.close(figure)
    written.append(path)

    figure, (rss, per) = plt.subplots(1, 2, figsize=(10, 3.6))
    for backend in sorted({point.backend for point in series.memory}):
        points = sorted(
            (p for p in series.memory if p.backend == backend), key=lambda p: p.connections
        )
        counts = [p.connections for p in points]
        rss.plot(counts, [p.rss_after_mib for p in points], marker="o", label=backend)
        per.plot(counts, [p.per_connection_kib for p in points], marker="o", label=backend)
    rss.set_xlabel("idle managed connections")
    rss.set_ylabel("process RSS, MiB")
    per.set_xlabel("idle managed connections")
    per.set_ylabel("KiB per connection")
    per.set_ylim(bottom=0)
    for axis in (rss, per):
        axis.set_xscale("log")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(f"Idle memory\n{series.caption}", fontsize=10)
    path = directory / CHARTS["memory"]
    _save(figure, path)
    plt.close(figure)
    written.append(path)
    return written


def main() -> None:
    """Redraw the charts from saved numbers (default: docs/charts/benchmarks-series.json)."""
    directory = Path(__file__).resolve().parents[1] / "docs" / "charts"
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else directory / SERIES_FILE
    for written in draw(load(path), path.parent):
        print(written)


if __name__ == "__main__":
    main()
