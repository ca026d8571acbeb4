"""A timeline of one run through several faults, drawn for docs/fault-matrix.md.

    python -m benchmarks.timeline [--output docs/charts/fault-timeline.svg] [--backend asyncio]

A managed connection consumes a tick feed (100 ticks/s) from the embedded test server while the
script injects, one after the other: a dropped TCP connection, a close with 1013, a silent
(half-open) server, two refused upgrades after a drop, and a make-before-break rotation. Every
lifecycle event (``on_event``) and every tick's arrival is recorded on the event loop's clock;
the chart shows ticks received per 100 ms, the outages from ``ws.outages`` (lost or covered), and
the events. Needs matplotlib (the ``[bench]`` extra). Takes about 7 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from managed_websocket import (
    Connected,
    ConnectFailed,
    Disconnected,
    LifecycleEvent,
    ManagedWebSocket,
    Outage,
    RotationCompleted,
)
from managed_websocket.testing import WebSocketTestServer, open_test_server

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "charts" / "fault-timeline.svg"
TICK = 0.01
BIN = 0.1


@dataclass
class Record:
    start: float = 0.0
    arrivals: list[float] = field(default_factory=list)
    events: list[tuple[float, LifecycleEvent]] = field(default_factory=list)
    faults: list[tuple[float, str]] = field(default_factory=list)
    outages: tuple[Outage, ...] = ()
    end: float = 0.0


async def _ticks(server: WebSocketTestServer) -> None:
    seq = 0
    while True:
        seq += 1
        await server.broadcast(json.dumps({"seq": seq}))
        await anyio.sleep(TICK)


async def record_run() -> Record:
    """Run the scenario once; everything on the loop clock, relative to the start."""
    record = Record(start=anyio.current_time())

    def now() -> float:
        return anyio.current_time() - record.start

    async with open_test_server(echo=False) as server:
        ws = ManagedWebSocket(
            server.url + "/ticks",
            ping_interval=0.2,
            ping_timeout=0.2,
            close_timeout=0.5,
            reconnect_delay=0.05,
            max_reconnect_delay=0.2,
            reconnect_jitter=0.0,
            server_unavailable_delay=0.5,
            max_reconnect_attempts=None,
            dedup_key=lambda message: message.get("seq"),
            on_event=lambda event: record.events.append((now(), event)),
        )

        async def fault(label: str, at: float) -> None:
            await anyio.sleep(max(at - now(), 0))
            record.faults.append((now(), label))

        async def scenario() -> None:
            await fault("drop (FIN)", 1.0)
            await server.drop_clients()
            await fault("close 1013", 2.0)
            await server.close_clients(1013, "maintenance")
            await fault("server silent", 3.3)
            server.silence_clients()
            await fault("2 refused upgrades", 4.5)
            server.refuse_handshakes(503, count=2)
            await server.drop_clients()
            await fault("rotate()", 5.6)
            await ws.rotate()

        async with anyio.create_task_group() as tg:
            tg.start_soon(_ticks, server)
            async with ws:
                tg.start_soon(scenario)
                with anyio.move_on_after(6.8 - now()):
                    async for _ in ws:
                        record.arrivals.append(now())
                record.outages = tuple(
                    Outage(
                        o.start - record.start,
                        None if o.end is None else o.end - record.start,
                        o.reason,
                        o.code,
                        covered=o.covered,
                    )
                    for o in ws.outages
                )
                record.end = now()
            tg.cancel_scope.cancel()
    return record


_EVENT_STYLE: dict[type[LifecycleEvent], tuple[str, str]] = {
    Disconnected: ("#d62728", "v"),
    ConnectFailed: ("#ff7f0e", "x"),
    Connected: ("#2ca02c", "^"),
    RotationCompleted: ("#1f77b4", "D"),
}


def _label(event: LifecycleEvent) -> str:
    if isinstance(event, Disconnected):
        return event.reason.name
    if isinstance(event, ConnectFailed):
        return "dial failed"
    if isinstance(event, RotationCompleted):
        return "rotated"
    return "connected"


def draw(record: Record, output: Path, caption: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "managed-websocket", "svg.fonttype": "none"})
    bins = int(record.end / BIN) + 1
    counts = [0] * bins
    for at in record.arrivals:
        counts[min(int(at / BIN), bins - 1)] += 1
    figure, (rate, lane) = plt.subplots(
        2, 1, figsize=(11, 4.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}
    )
    rate.step([i * BIN for i in range(bins)], counts, where="post", color="#444444", lw=1)
    rate.set_ylabel(f"ticks per {BIN * 1000:.0f} ms")
    for outage in record.outages:
        end = outage.end if outage.end is not None else record.end
        colour = "#2ca02c" if outage.covered else "#d62728"
        rate.axvspan(outage.start, end, color=colour, alpha=0.18, lw=0)
    for at, label in record.faults:
        rate.axvline(at, color="#555555", ls=":", lw=1)
        rate.annotate(label, (at, max(counts) * 1.02), fontsize=8, rotation=0, ha="left")
    rate.set_ylim(0, max(counts) * 1.2 + 1)
    rate.set_title(
        "One run through five faults: ticks received, outages (red: lost, green: covered by a"
        f" rotation)\n{caption}",
        fontsize=10,
    )
    kinds = list(_EVENT_STYLE)
    for at, event in record.events:
        style = _EVENT_STYLE.get(type(event))
        if style is None:
            continue
        row = kinds.index(type(event))
        lane.scatter([at], [row], color=style[0], marker=style[1], s=28, zorder=3)
        if isinstance(event, Disconnected):
            lane.annotate(_label(event), (at, row), xytext=(3, 4), textcoords="offset points",
                          fontsize=7)  # fmt: skip
    lane.set_yticks(range(len(kinds)), [k.__name__ for k in kinds], fontsize=8)
    lane.set_ylim(-0.6, len(kinds) - 0.4)
    lane.invert_yaxis()
    lane.set_xlabel("seconds since start (event loop clock)")
    lane.grid(axis="x", alpha=0.3)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(figure)


def summary(record: Record) -> dict[str, Any]:
    """What the chart shows, as numbers (printed, so a reader can check the picture)."""
    return {
        "seconds": round(record.end, 2),
        "ticks": len(record.arrivals),
        "outages": [
            {
                "start": round(o.start, 3),
                "duration": None if o.duration is None else round(o.duration, 3),
                "reason": o.reason.name,
                "covered": o.covered,
            }
            for o in record.outages
        ],
        "events": [type(e).__name__ for _, e in record.events],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    record = anyio.run(record_run, backend=args.backend)
    caption = (
        f"{time.strftime('%Y-%m-%d')}, Python {platform.python_version()}, {args.backend},"
        " the test server from managed_websocket.testing"
    )
    draw(record, args.output, caption)
    print(json.dumps(summary(record)))


if __name__ == "__main__":
    main()
