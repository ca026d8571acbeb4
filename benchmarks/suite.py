"""Run the whole benchmark suite and write the report (started by ``bash benchmarks/run.sh``).

``python -m benchmarks.suite [--install-log FILE] [--rounds 3] [--output docs/benchmarks.md]``

Starts the server, runs every available client in its own process for ``--rounds`` interleaved
rounds, then the idle-memory and reconnect benchmarks, and prints the markdown report to stdout
and to ``--output``. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import machine, pool, report
from .client import FIGURES
from .clients import SPECS, ClientSpec
from .report import ClientRuns, Install, Result
from .sections import marked_sections

ROOT = Path(__file__).resolve().parent.parent
CLIENT_TIMEOUT = 60.0
MEMORY_TIMEOUT = 180.0
RECONNECT_TIMEOUT = 60.0
MEMORY_COUNTS = (1_000, 10_000)
BACKENDS = ("asyncio", "trio")


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ installs and availability


def read_installs(path: Path | None) -> list[Install]:
    """run.sh's log: one ``package<TAB>ok|failed<TAB>version or reason`` line per peer."""
    if path is None:
        return []
    installs = []
    for line in path.read_text().splitlines():
        package, status, detail = (line.split("\t", 2) + ["", ""])[:3]
        installs.append(Install(package, status == "ok", detail))
    return installs


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False  # a parent package is missing


def availability(spec: ClientSpec, installs: list[Install]) -> str:
    """Why ``spec`` cannot run here, or "" when it can."""
    failed = {i.package: i.detail for i in installs if not i.ok}
    if spec.package in failed:
        return f"install failed: {failed[spec.package]}"
    if spec.needs_module and not _importable(spec.needs_module):
        return f"not available: no module {spec.needs_module} in the installed {spec.package}"
    return ""


# ------------------------------------------------------------------ processes


@contextmanager
def running_server() -> Iterator[str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.server"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the benchmark server did not start: {line!r}")
        yield f"ws://127.0.0.1:{line.split()[1]}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def run_json(args: list[str], timeout: float) -> Result:
    """Run ``python -m ARGS``; its last stdout line is JSON. Failures become ``{"error": ...}``."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", *args],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        errors = done.stderr.strip().splitlines()
        return {"error": errors[-1] if errors else f"exit status {done.returncode}"}
    result: Result = json.loads(lines[-1])
    return result


def run_client(spec: ClientSpec, base: str) -> dict[str, Result]:
    result = run_json(["benchmarks.client", "--client", spec.name, "--base", base], CLIENT_TIMEOUT)
    if "error" in result:  # the whole process failed: every figure failed
        return dict.fromkeys(FIGURES, result)
    return result


def run_rounds(
    clients: list[ClientRuns], base: str, rounds: int, loads: list[machine.Load]
) -> None:
    runnable = [client for client in clients if not client.status]
    for index in range(rounds):
        loads.append(machine.load(f"round {index + 1}"))
        order = runnable if index % 2 == 0 else runnable[::-1]
        for client in order:
            started = time.perf_counter()
            client.runs.append(run_client(client.spec, base))
            took = time.perf_counter() - started
            progress(f"round {index + 1}/{rounds} {client.spec.name}: {took:.1f} s")


def run_memory(base: str, counts: tuple[int, ...]) -> list[tuple[str, int, Result]]:
    results = []
    for count in counts:
        for backend in BACKENDS:
            args = ["--backend", backend, "--count", str(count), "--url", f"{base}/idle"]
            result = run_json(["benchmarks.idle_memory", *args], MEMORY_TIMEOUT)
            progress(f"idle memory {backend} x{count}: {result}")
            results.append((backend, count, result))
    return results


def run_reconnect(base: str) -> list[tuple[str, Result]]:
    results = []
    for backend in BACKENDS:
        args = ["--backend", backend, "--url", f"{base}/drop", "--samples", "50"]
        result = run_json(["benchmarks.reconnect", *args], RECONNECT_TIMEOUT)
        progress(f"reconnect {backend}: {result}")
        results.append((backend, result))
    return results


# ------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install-log", type=Path, help="written by run.sh")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument(
        "--memory-counts",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=MEMORY_COUNTS,
        help="idle connections per memory run, comma-separated (default: 1000,10000)",
    )
    args = parser.parse_args()

    started = time.perf_counter()
    installs = read_installs(args.install_log)
    uptime_start = machine.uptime()
    loads = [machine.load("start")]
    progress(f"load: {uptime_start}")
    info = machine.describe(ROOT)
    clients = [ClientRuns(spec, availability(spec, installs)) for spec in SPECS]
    with running_server() as base:
        run_rounds(clients, base, args.rounds, loads)
        loads.append(machine.load("memory"))
        memory = run_memory(base, args.memory_counts)
        loads.append(machine.load("reconnect"))
        reconnect = run_reconnect(base)
        loads.append(machine.load("pool"))
        pool_results = pool.measure(base)
    loads.append(machine.load("end"))
    run = report.Run(
        machine=info,
        installs=installs,
        clients=clients,
        memory=memory,
        reconnect=reconnect,
        pool=pool_results,
        loads=loads,
        uptime_start=uptime_start,
        uptime_end=machine.uptime(),
        elapsed=time.perf_counter() - started,
        rounds=args.rounds,
    )
    charts = _draw_charts(run, args.output.parent / "charts")
    text = report.render(run, charts)
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    kept = marked_sections(args.output)  # written by benchmarks.deflate, benchmarks.pool, by hand
    args.output.write_text(text + "\n" + "".join(f"\n{section}\n" for section in kept))
    progress(f"report written to {args.output}")


def _draw_charts(run: report.Run, directory: Path) -> list[str]:
    """The charts of this run as SVG (matplotlib, the [bench] extra); none without it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        progress("no charts: matplotlib is not installed (pip install '.[bench]')")
        return []
    written = report.draw_charts(run, directory)
    progress(f"charts written: {', '.join(str(path) for path in written)}")
    return [name for name, file in report.CHARTS.items() if directory / file in written]


if __name__ == "__main__":
    main()
