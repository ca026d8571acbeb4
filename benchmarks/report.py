"""Turn the measurements of one run into the markdown report (medians, ratios, method) and its
SVG charts (throughput, latency, memory; drawn by ``charts.py`` with matplotlib, the ``[bench]``
extra)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import pool, wire
from .charts import CHARTS, Bar, MemoryPoint, Series
from .client import BINARY_PLAN, ECHO_PLAN, TEXT_PLAN
from .clients import FLOORS, REFERENCE, SPECS, ClientSpec
from .clients.common import CLOSE_GRACE, MAX_MESSAGE_SIZE, QUEUE_SIZE, READ_SIZE
from .machine import Load, Machine

Result = dict[str, Any]  # one figure of one client run, as benchmarks.client printed it


# ------------------------------------------------------------------ what the runs collected


@dataclass
class ClientRuns:
    spec: ClientSpec
    status: str = ""  # why it did not run ("install failed: ..."); empty when it ran
    runs: list[dict[str, Result]] = field(default_factory=list)


@dataclass(frozen=True)
class Install:
    package: str
    ok: bool
    detail: str  # the version, or why it failed


@dataclass
class Run:
    machine: Machine
    installs: list[Install]
    clients: list[ClientRuns]
    memory: list[tuple[str, int, Result]]  # backend, connections, result
    reconnect: list[tuple[str, Result]]  # backend, result
    loads: list[Load]
    uptime_start: str
    uptime_end: str
    elapsed: float
    rounds: int
    pool: list[tuple[str, Result]] = field(default_factory=list)  # backend, result


# ------------------------------------------------------------------ figures


def _text_rate(spec: ClientSpec, result: Result) -> float:
    if spec.floor:
        return float(result["wire_bytes"]) / wire.TEXT_FRAME_SIZE / result["seconds"]
    return float(result["messages"]) / result["seconds"]


def _binary_rate(spec: ClientSpec, result: Result) -> float:
    size = result["wire_bytes"] if spec.floor else result["messages"] * wire.BINARY_PAYLOAD_SIZE
    return float(size) / result["seconds"] / 1e6


METRICS: dict[str, tuple[str, Callable[[ClientSpec, Result], float]]] = {
    "text": ("text", _text_rate),
    "binary": ("binary", _binary_rate),
    "p50": ("echo", lambda spec, result: float(result["p50_us"])),
    "p99": ("echo", lambda spec, result: float(result["p99_us"])),
}


@dataclass
class Summary:
    values: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # message -> in how many runs
    notes: dict[str, int] = field(default_factory=dict)

    def median(self, metric: str) -> float | None:
        values = self.values.get(metric)
        return statistics.median(values) if values else None


def summarize(client: ClientRuns) -> Summary:
    summary = Summary()
    for run in client.runs:
        for metric, (figure, value) in METRICS.items():
            result = run.get(figure, {"error": "no result"})
            if "error" not in result:
                summary.values.setdefault(metric, []).append(value(client.spec, result))
        for figure, result in run.items():
            _count_problem(summary, figure, result)
    return summary


def _count_problem(summary: Summary, figure: str, result: Result) -> None:
    if "error" in result:
        target, text = summary.errors, result["error"]
    elif result.get("note"):
        target, text = summary.notes, result["note"]
    else:
        return
    message = f"{figure}: {text}"
    target[message] = target.get(message, 0) + 1


# ------------------------------------------------------------------ formatting


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _number(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or reference is None or reference == 0:
        return "—"
    return f"{value / reference:.2f}×"


# ------------------------------------------------------------------ the main table

_MAIN_HEADERS = (
    "client",
    "backend",
    "text msg/s",
    "× ws",
    "× floor",
    "binary MB/s",
    "× ws",
    "× floor",
    "echo p50 µs",
    "echo p99 µs",
    "p50 × ws",
    "p50 × floor",
    "notes",
)


def _main_row(client: ClientRuns, summaries: dict[str, Summary]) -> list[str]:
    spec = client.spec
    if client.status:
        return [spec.label, spec.backend, *["—"] * 10, client.status]
    own, ref = summaries[spec.name], summaries.get(REFERENCE, Summary())
    floor = summaries.get(FLOORS.get(spec.backend, ""), Summary())
    cells = [spec.label, spec.backend]
    for metric in ("text", "binary"):
        value = own.median(metric)
        cells += [_number(value), _ratio(value, ref.median(metric))]
        cells.append(_ratio(value, floor.median(metric)))
    p50 = own.median("p50")
    cells += [_number(p50, 1), _number(own.median("p99"), 1)]
    cells += [_ratio(p50, ref.median("p50")), _ratio(p50, floor.median("p50"))]
    cells.append(_notes(own, len(client.runs)))
    return cells


def _notes(summary: Summary, runs: int) -> str:
    parts = [f"failed: {m} ({n} of {runs} runs)" for m, n in summary.errors.items()]
    parts += [f"{m} ({n} of {runs} runs)" for m, n in summary.notes.items()]
    return "; ".join(parts).replace("|", "/")


def _detail_rows(clients: list[ClientRuns], summaries: dict[str, Summary]) -> list[list[str]]:
    rows = []
    for client in clients:
        if client.status:
            continue
        values = summaries[client.spec.name].values
        cells = [client.spec.label, client.spec.backend]
        for metric, digits in (("text", 0), ("binary", 0), ("p50", 1), ("p99", 1)):
            cells.append(" / ".join(_number(v, digits) for v in values.get(metric, [])) or "—")
        rows.append(cells)
    return rows


#: Below this ratio (floor / fastest client) the report says the figure is capped by the pipe.
FAR_ENOUGH = 2.0


def _fastest(summaries: dict[str, Summary], metric: str, lowest: bool) -> ClientSpec | None:
    ranked = [s for s in SPECS if not s.floor and summaries.get(s.name, Summary()).median(metric)]
    if not ranked:
        return None

    def value(spec: ClientSpec) -> float:
        return summaries[spec.name].median(metric) or 0.0

    return min(ranked, key=value) if lowest else max(ranked, key=value)


def _throughput_headroom(
    summaries: dict[str, Summary], metric: str, unit: str, floor_unit: str
) -> str | None:
    best = _fastest(summaries, metric, lowest=False)
    top = summaries.get("raw-socket", Summary()).median(metric)
    if best is None or top is None:
        return None
    base = summaries[best.name].median(metric) or 0.0
    line = (
        f"- {metric}: the blocking raw-socket reader got {_number(top)} {floor_unit}, "
        f"{top / base:.1f}× the fastest WebSocket client ({best.title}, {_number(base)} {unit})."
    )
    if top / base < FAR_ENOUGH:
        line += (
            " Not far above: for this figure the pipe itself (server, kernel, this process's "
            "share of the CPUs) is close to the limit, so the fastest clients are capped by it."
        )
    return line


def _echo_headroom(summaries: dict[str, Summary]) -> str | None:
    best = _fastest(summaries, "p50", lowest=True)
    floor = summaries.get("raw-socket", Summary()).median("p50")
    if best is None or floor is None:
        return None
    return (
        f"- echo: blocking raw socket p50 {_number(floor, 1)} µs; fastest client p50 "
        f"{_number(summaries[best.name].median('p50'), 1)} µs ({best.title}). Round trips are "
        "mostly wake-ups of two processes, not server work; a callback client that answers "
        "inside its read callback skips a loop iteration, so it can beat the awaiting anyio floor."
    )


def _headroom(summaries: dict[str, Summary]) -> list[str]:
    """Whether the server could be what limits the clients: the raw-socket floor vs the best."""
    lines = [
        _throughput_headroom(summaries, "text", "msg/s", "frame-equivalents/s"),
        _throughput_headroom(summaries, "binary", "MB/s", "MB/s"),
        _echo_headroom(summaries),
    ]
    return [line for line in lines if line is not None]


# ------------------------------------------------------------------ the other sections


def _memory_rows(memory: list[tuple[str, int, Result]]) -> list[list[str]]:
    rows = []
    for backend, count, result in memory:
        if "error" in result:
            rows.append([backend, f"{count:,}", "—", "—", "—", "—", "—", result["error"]])
            continue
        rows.append(
            [
                backend,
                f"{count:,}",
                _number(result["rss_before"] / 2**20, 1),
                _number(result["rss_after"] / 2**20, 1),
                _number(result["per_connection"] / 1024, 1),
                _number(result["open_seconds"], 2),
                _number(result["cancel_seconds"], 2),
                f"soft RLIMIT_NOFILE {result['fd_limit']}",
            ]
        )
    return rows


def _reconnect_rows(reconnect: list[tuple[str, Result]]) -> list[list[str]]:
    rows = []
    for backend, result in reconnect:
        if "error" in result:
            rows.append([backend, "—", "—", "—", "—", "—", result["error"]])
            continue
        cells = [backend, str(result["samples"])]
        cells += [_number(result[k], 2) for k in ("median_ms", "min_ms", "p90_ms", "max_ms")]
        rows.append([*cells, ""])
    return rows


_GENERATED = (
    "Generated by `bash benchmarks/run.sh` (not part of the CI test run); every number below was "
    "measured in that run."
)


def _header(run: Run) -> list[str]:
    m = run.machine
    packages = ", ".join(f"{name} {version}" for name, version in m.packages.items())
    return [
        "# Benchmarks",
        "",
        _GENERATED,
        "",
        f"- date: {m.started} (UTC), whole run {run.elapsed:.0f} s",
        f"- CPU: {m.cpu}; cores: {m.cores}; memory: {m.memory}",
        f"- system: {m.system}; Python: {m.python}",
        f"- managed-websocket source: {m.source}",
        f"- packages: {packages}",
        f"- `uptime` at start: `{run.uptime_start}`",
        f"- `uptime` at end: `{run.uptime_end}`",
        f"- load average (1/5/15 min) during the run: {'; '.join(map(str, run.loads))}",
        "",
    ]


def _installs(installs: list[Install]) -> list[str]:
    if not installs:
        return ["Peer installs: no install log (the suite was not started by run.sh).", ""]
    rows = [[i.package, "installed" if i.ok else "install failed", i.detail] for i in installs]
    return ["## Peer packages", "", table(("package", "status", "version / reason"), rows), ""]


_METHOD = """\
## Method

- Server (`benchmarks/server.py`): plain asyncio sockets and a hand-written HTTP upgrade that never
  negotiates an extension (so no compression for anyone). The firehose modes write a pre-built
  blob of about {blob_kib} KiB of frames again and again with `loop.sock_sendall`: {text_size}-byte
  JSON text frames, or {binary_kib} KiB binary frames. The echo mode answers each frame.
- Every client runs in its own process (`python -m benchmarks.client --client NAME`), with one
  connection and one event loop per figure; the server is another process. {rounds} rounds; each
  round runs every client once, in reverse order every other round. The tables show the median of
  the {rounds} runs; every run is listed under Spread.
- text: {text_warmup:,} messages of warm-up, then messages counted for {text_seconds:g} s (the clock
  is read every {text_check} messages, or every batch). binary: {binary_warmup} messages of warm-up,
  then {binary_seconds:g} s; MB = 10^6 bytes of payload. echo: {echo_warmup} round trips of warm-up,
  then {echo_rounds:,} sequential round trips of a {text_size}-byte text message; p50 and p99 of each
  run (nearest rank).
- Every WebSocket client is measured by the same loops (`benchmarks/clients/common.py`), fed with
  the library's own receive call (the call its `async for` makes), and hands the application a
  `str` (text) or `bytes` (binary) per message; the JSON rows decode each message into a dict.
  picows is driven by its synchronous callbacks, as its docs show: `on_ws_frame` turns each frame
  into str/bytes and sends the next echo request itself.
- Peer settings, for fairness: compression off; message size limit {max_mib} MiB; queues of
  {queue:,} where the library has one (managed `queue_size`, websockets `max_queue`,
  trio-websocket `message_queue_size`; aiohttp's and picows' are not configurable); keepalive pings
  off; trio-websocket's receive buffer {read_kib} KiB (managed_websocket's read size; its default
  is 4 KiB); websockets `proxy=None`. A client whose close has not finished {grace:g} s after
  measuring is cancelled, and its notes say so.
- Raw floors: no WebSocket parsing; the upgrade, then bytes counted (text: bytes / {frame_size} =
  frame-equivalents/s). `raw floor: anyio stream` is `stream.receive({read_size})` on that backend,
  the ceiling for any anyio client there and the `× floor` reference for that backend's clients.
  `raw floor: blocking socket` is `recv_into` a 4 MiB buffer on a blocking socket: what the server
  and the kernel deliver, to show whether the server could be the bottleneck. The floors' echo sends a pre-masked frame and reads the {frame_size}-byte reply.
- `× ws` = value / websockets (asyncio) value; `× floor` = value / the same backend's anyio floor.
  Throughput: higher is better. Latency ratios: lower is better.
- Idle memory: one process opens a warm-up connection, reads its RSS (`/proc/self/statm`), opens N
  `ManagedWebSocket`s with default options to the server's silent `/idle` mode (100 at a time),
  waits 0.5 s and reads the RSS again: (after - before) / N. Kernel socket buffers are not in RSS.
  The soft RLIMIT_NOFILE is raised with `resource.setrlimit`. "cancel s" is how long cancelling
  them all took afterwards.
- Reconnect: `reconnect_strategy=ReconnectStrategy.IMMEDIATE`, `max_reconnect_attempts=None`. The
  server closes the TCP connection without a close frame and stamps the time (`time.monotonic`:
  one clock for every process on Linux); latency = arrival of the first message on the new
  connection - that stamp. 5 warm-up drops, then 50 samples.
- The machine is shared (2 cores, other engineers running tests): see the load averages above;
  echo percentiles move with it most.
"""


def _method(run: Run) -> list[str]:
    text = _METHOD.format(
        blob_kib=wire.BLOB_SIZE // 1024,
        text_size=wire.TEXT_PAYLOAD_SIZE,
        binary_kib=wire.BINARY_PAYLOAD_SIZE // 1024,
        rounds=run.rounds,
        text_warmup=TEXT_PLAN.warmup,
        text_seconds=TEXT_PLAN.seconds,
        text_check=TEXT_PLAN.check_every,
        binary_warmup=BINARY_PLAN.warmup,
        binary_seconds=BINARY_PLAN.seconds,
        echo_warmup=ECHO_PLAN.warmup,
        echo_rounds=ECHO_PLAN.rounds,
        max_mib=MAX_MESSAGE_SIZE // 2**20,
        queue=QUEUE_SIZE,
        read_kib=READ_SIZE // 1024,
        grace=CLOSE_GRACE,
        frame_size=wire.TEXT_FRAME_SIZE,
        read_size=READ_SIZE,
    )
    return text.splitlines()


# ------------------------------------------------------------------ charts


def chart_series(run: Run) -> Series:
    """The figures the charts show, from the same medians as the tables (pure)."""
    summaries = {c.spec.name: summarize(c) for c in run.clients if not c.status}
    bars = []
    for client in run.clients:
        if client.status:
            continue
        own = summaries[client.spec.name]
        bars.append(
            Bar(
                label=client.spec.title,
                text=own.median("text"),
                binary=own.median("binary"),
                p50=own.median("p50"),
                p99=own.median("p99"),
                ours=client.spec.package is None and not client.spec.floor,
            )
        )
    memory = [
        MemoryPoint(
            backend=backend,
            connections=count,
            rss_after_mib=result["rss_after"] / 2**20,
            per_connection_kib=result["per_connection"] / 1024,
        )
        for backend, count, result in run.memory
        if "error" not in result
    ]
    m = run.machine
    caption = f"{m.started[:10]}, {m.cpu}, {m.cores} cores, {m.python}, {run.rounds} runs"
    return Series(bars=bars, memory=memory, caption=caption)


def draw_charts(run: Run, directory: Path) -> list[Path]:
    """Draw the charts of ``run`` as SVG into ``directory`` (needs matplotlib), and save their
    numbers beside them (``charts.SERIES_FILE``) so that they can be redrawn without a run."""
    from .charts import SERIES_FILE, draw, save

    series = chart_series(run)
    save(series, directory / SERIES_FILE)
    return draw(series, directory)


def _chart(name: str, alt: str, charts: Sequence[str]) -> list[str]:
    """The Markdown image of chart ``name`` when it was drawn in this run, else nothing."""
    return [f"![{alt}](charts/{CHARTS[name]})", ""] if name in charts else []


def render(run: Run, charts: Sequence[str] = ()) -> str:
    """The report; ``charts``: the names (``CHARTS`` keys) drawn for this run, shown as images."""
    summaries = {c.spec.name: summarize(c) for c in run.clients if not c.status}
    main_rows = [_main_row(client, summaries) for client in run.clients]
    spread_headers = ("client", "backend", "text msg/s", "binary MB/s", "p50 µs", "p99 µs")
    memory_headers = (
        "backend",
        "connections",
        "RSS before MiB",
        "RSS after MiB",
        "per connection KiB",
        "open s",
        "cancel s",
        "notes",
    )
    reconnect_headers = ("backend", "samples", "median ms", "min ms", "p90 ms", "max ms", "notes")
    lines = [
        *_header(run),
        f"## Throughput and latency (median of {run.rounds} runs)",
        "",
        *_chart("throughput", "Throughput of each client, text and binary", charts),
        *_chart("latency", "Echo round-trip latency of each client, p50 and p99", charts),
        table(_MAIN_HEADERS, main_rows),
        "",
        "Server headroom:",
        "",
        *_headroom(summaries),
        "",
        "## Idle memory per managed connection",
        "",
        *_chart("memory", "Process RSS and KiB per idle managed connection", charts),
        table(memory_headers, _memory_rows(run.memory)),
        "",
        "## Reconnect latency (IMMEDIATE)",
        "",
        table(reconnect_headers, _reconnect_rows(run.reconnect)),
        "",
        *(pool.render(run.pool) if run.pool else []),
        *_installs(run.installs),
        "## Spread (every run, in order)",
        "",
        table(spread_headers, _detail_rows(run.clients, summaries)),
        "",
        *_method(run),
    ]
    return "\n".join(lines)
