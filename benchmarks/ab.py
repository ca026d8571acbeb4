"""Side-by-side figures for issue 17: round-trip latency and decoded throughput, in one run.

``python -m benchmarks.ab --report [--rounds 6] [--before SRC] [--spin] [--figures echo,trades]``

Starts ``benchmarks.server``, then runs every client of each figure in its own process, in
interleaved rounds (the order reversed every other round), and prints one markdown table per
figure: the median of the rounds and their spread (min–max). ``--before SRC`` adds the managed
clients once more, importing ``managed_websocket`` from another source tree (``PYTHONPATH``), for
an honest before/after on a noisy machine. ``--spin`` keeps every core awake while measuring with
one ``nice -n 19`` busy loop per core: an idle-CPU echo mostly measures a sleeping core's wake-up.

Figures:

- ``echo``: 5,000 sequential round trips of a 100-byte text message after 500 warm-up ones; p50
  and p99 in µs. The floor is a raw anyio stream writing the pre-masked frame and reading the
  echo's bytes. Managed clients run with ``decode=None`` (as the raw floor and the peers, which
  do not decode); ``request`` is ``ws.request(message, match=...)`` on the same connection.
- ``trades``: the ``/trades`` firehose of 200-byte Binance-style trade messages, counted for one
  second after 10,000 warm-up messages, every message decoded: the managed default ``decode``
  with the ``[fast]`` extra (msgspec) and without it, the peers with ``json.loads``.

``python -m benchmarks.ab --client NAME --base URL`` runs one client and prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter, perf_counter_ns
from typing import Any

from .clients.common import (
    CLOSE_TIMEOUT,
    MAX_MESSAGE_SIZE,
    QUEUE_SIZE,
    Count,
    EchoPlan,
    StreamPlan,
    with_bounded_close,
)
from .wire import ECHO_TEXT

ROOT = Path(__file__).resolve().parent.parent
ECHO_PLAN = EchoPlan(warmup=500, rounds=5_000)
TRADES_PLAN = StreamPlan(warmup=10_000, seconds=1.0, check_every=256)
CLIENT_TIMEOUT = 60.0


# ------------------------------------------------------------------ the clients (one per process)


def _run(backend: str, func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    if backend == "trio":
        import trio

        return trio.run(func, *args)
    return asyncio.run(func(*args))


def _echo_result(times: list[int]) -> dict[str, Any]:
    times.sort()
    return {
        "p50_us": statistics.median(times) / 1000,
        "p99_us": times[int(len(times) * 0.99) - 1] / 1000,
    }


async def _count(receive: Callable[[], Awaitable[Any]], plan: StreamPlan) -> dict[str, Any]:
    last = None
    for _ in range(plan.warmup):
        last = await receive()
    count, step = 0, plan.check_every
    start = perf_counter()
    deadline = start + plan.seconds
    while True:
        for _ in range(step):
            last = await receive()
        count += step
        now = perf_counter()
        if now >= deadline:
            if not isinstance(last, dict):
                raise ValueError(f"not decoded: {type(last).__name__}")
            return {"rate": count / (now - start)}


#: The managed clients' options for the echo (no decode, no keepalive: as the floor and the peers).
MANAGED_ECHO_OPTIONS: dict[str, Any] = {
    "decode": None,
    "ping_interval": None,
    "queue_size": QUEUE_SIZE,
    "max_message_size": MAX_MESSAGE_SIZE,
    "close_timeout": CLOSE_TIMEOUT,
}


async def managed_round_trips(ws: Any, request: bool, record: Callable[[int, int], None]) -> None:
    """ECHO_PLAN's round trips on ``ws``: send + receive, or ``request()`` with a matcher as cheap
    as an id check; ``record(start_ns, end_ns)`` for each one after the warm-up."""
    messages = aiter(ws)
    prefix = ECHO_TEXT[:8]

    def match(message: Any) -> bool:
        return isinstance(message, str) and message.startswith(prefix)

    for n in range(ECHO_PLAN.warmup + ECHO_PLAN.rounds):
        start = perf_counter_ns()
        if request:
            await ws.request(ECHO_TEXT, match=match)
        else:
            await ws.send(ECHO_TEXT)
            await anext(messages)
        if n >= ECHO_PLAN.warmup:
            record(start, perf_counter_ns())


async def _managed_echo(base: str, request: bool) -> dict[str, Any]:
    from managed_websocket import open_managed_websocket

    times: list[int] = []
    async with open_managed_websocket(f"{base}/echo", **MANAGED_ECHO_OPTIONS) as ws:
        await managed_round_trips(ws, request, lambda start, end: times.append(end - start))
    return _echo_result(times)


async def _managed_trades(base: str, fast: bool) -> dict[str, Any]:
    from managed_websocket import _messages, open_managed_websocket

    if not fast:
        _messages._fast_loads = None  # as if the [fast] extra were not installed
    options: dict[str, Any] = {
        "ping_interval": None,
        "queue_size": QUEUE_SIZE,
        "max_message_size": MAX_MESSAGE_SIZE,
        "close_timeout": CLOSE_TIMEOUT,
    }
    async with open_managed_websocket(f"{base}/trades", **options) as ws:
        result = await _count(aiter(ws).__anext__, TRADES_PLAN)
    result["fast_json"] = bool(getattr(_messages, "_fast_loads", None))
    return result


async def _aiohttp(base: str, figure: str) -> dict[str, Any]:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"{base}/{figure}",
            compress=0,
            max_msg_size=MAX_MESSAGE_SIZE,
            heartbeat=None,
            timeout=aiohttp.ClientWSTimeout(ws_close=CLOSE_TIMEOUT),
        ) as ws,
    ):
        if figure == "echo":
            times = []
            for n in range(ECHO_PLAN.warmup + ECHO_PLAN.rounds):
                start = perf_counter_ns()
                await ws.send_str(ECHO_TEXT)
                await ws.receive()
                if n >= ECHO_PLAN.warmup:
                    times.append(perf_counter_ns() - start)
            return _echo_result(times)
        receive, loads = ws.receive, json.loads

        async def decoded() -> Any:
            return loads((await receive()).data)

        return await _count(decoded, TRADES_PLAN)


async def _websockets(base: str, figure: str, module: str) -> dict[str, Any]:
    import importlib

    connect = importlib.import_module(f"websockets.{module}.client").connect
    options = {
        "compression": None,
        "max_size": MAX_MESSAGE_SIZE,
        "max_queue": QUEUE_SIZE,
        "ping_interval": None,
        "close_timeout": CLOSE_TIMEOUT,
        "proxy": None,
    }

    async def measure(ws: Any) -> Count:
        if figure == "echo":
            times = []
            for n in range(ECHO_PLAN.warmup + ECHO_PLAN.rounds):
                start = perf_counter_ns()
                await ws.send(ECHO_TEXT)
                await ws.recv()
                if n >= ECHO_PLAN.warmup:
                    times.append(perf_counter_ns() - start)
            return Count(0, 0.0, _echo_result(times))
        recv, loads = ws.recv, json.loads

        async def decoded() -> Any:
            return loads(await recv())

        return Count(0, 0.0, await _count(decoded, TRADES_PLAN))

    # A firehose's close can take long (websockets reads what is in flight): bounded, as in
    # the suite, and the measurement stands.
    count = await with_bounded_close(lambda: connect(f"{base}/{figure}", **options), measure)
    result: dict[str, Any] = count.sample
    return result


async def _floor(base: str) -> dict[str, Any]:
    from .clients.raw import make

    echo = await make("anyio").echo(f"{base}/echo", ECHO_PLAN)
    return _echo_result(list(echo.round_trips_ns))


@dataclass(frozen=True)
class Spec:
    name: str
    figure: str
    backend: str
    label: str
    run: Callable[[str], Awaitable[dict[str, Any]]]
    managed: bool = False  # also run from the --before tree


SPECS = [
    *(
        Spec(f"floor-{b}", "echo", b, f"floor: raw anyio stream ({b})", _floor)
        for b in ("asyncio", "trio")
    ),
    *(
        Spec(f"echo-{b}", "echo", b, f"managed send + receive ({b})", _echo, managed=True)
        for b, _echo in (
            ("asyncio", lambda base: _managed_echo(base, request=False)),
            ("trio", lambda base: _managed_echo(base, request=False)),
        )
    ),
    *(
        Spec(f"request-{b}", "echo", b, f"managed request() ({b})", _req)
        for b, _req in (
            ("asyncio", lambda base: _managed_echo(base, request=True)),
            ("trio", lambda base: _managed_echo(base, request=True)),
        )
    ),
    Spec("aiohttp-echo", "echo", "asyncio", "aiohttp (asyncio)", lambda b: _aiohttp(b, "echo")),
    Spec(
        "websockets-echo-asyncio",
        "echo",
        "asyncio",
        "websockets (asyncio)",
        lambda b: _websockets(b, "echo", "asyncio"),
    ),
    Spec(
        "websockets-echo-trio",
        "echo",
        "trio",
        "websockets (trio)",
        lambda b: _websockets(b, "echo", "trio"),
    ),
    *(
        Spec(
            f"trades-{b}{'' if fast else '-nofast'}",
            "trades",
            b,
            f"managed, default decode, {'with' if fast else 'without'} [fast] ({b})",
            (lambda base, fast=fast: _managed_trades(base, fast)),
            managed=not fast,
        )
        for b in ("asyncio", "trio")
        for fast in (True, False)
    ),
    Spec(
        "aiohttp-trades",
        "trades",
        "asyncio",
        "aiohttp + json.loads (asyncio)",
        lambda b: _aiohttp(b, "trades"),
    ),
    Spec(
        "websockets-trades-asyncio",
        "trades",
        "asyncio",
        "websockets + json.loads (asyncio)",
        lambda b: _websockets(b, "trades", "asyncio"),
    ),
    Spec(
        "websockets-trades-trio",
        "trades",
        "trio",
        "websockets + json.loads (trio)",
        lambda b: _websockets(b, "trades", "trio"),
    ),
]
BY_NAME = {spec.name: spec for spec in SPECS}


# ------------------------------------------------------------------ the runner


def progress(message: str) -> None:
    print(f"[ab] {message}", file=sys.stderr, flush=True)


def pinned(cpu: int | None) -> list[str]:
    """The command prefix that runs a process on one CPU only (none for ``None``)."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def cpus(pin: bool) -> tuple[int | None, int | None]:
    """(server CPU, client CPU) for ``--pin``: apart, so that a write does not hand the client's
    core to the woken server, and the measurement is not a lottery of where each one runs."""
    count = os.cpu_count() or 1
    return (count - 1, 0) if pin and count > 1 else (None, None)


@contextmanager
def running_server(cpu: int | None = None) -> Iterator[str]:
    server = subprocess.Popen(
        [*pinned(cpu), sys.executable, "-m", "benchmarks.server"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
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


@contextmanager
def spinners(enabled: bool) -> Iterator[None]:
    """One lowest-priority busy loop per core while measuring (none if not ``enabled``)."""
    spin = ["nice", "-n", "19", sys.executable, "-c", "while True: pass"]
    procs = [subprocess.Popen(spin) for _ in range(os.cpu_count() or 1)] if enabled else []
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


def run_one(name: str, base: str, src: str | None, cpu: int | None = None) -> dict[str, Any]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    try:
        done = subprocess.run(
            [*pinned(cpu), sys.executable, "-m", "benchmarks.ab", "--client", name, "--base", base],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        errors = done.stderr.strip().splitlines()
        return {"error": errors[-1] if errors else f"exit {done.returncode}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def report(args: argparse.Namespace) -> None:
    figures = args.figures.split(",")
    runs: list[tuple[str, str | None]] = []  # (spec name, src tree or None)
    for spec in SPECS:
        if spec.figure not in figures:
            continue
        runs.append((spec.name, None))
        if args.before and spec.managed:
            runs.append((spec.name, args.before))
    results: dict[tuple[str, str | None], list[dict[str, Any]]] = {run: [] for run in runs}
    started = time.perf_counter()
    server_cpu, client_cpu = cpus(args.pin)
    with running_server(server_cpu) as base, spinners(args.spin):
        for index in range(args.rounds):
            order = runs if index % 2 == 0 else runs[::-1]
            for name, src in order:
                results[(name, src)].append(run_one(name, base, src, client_cpu))
            progress(
                f"round {index + 1}/{args.rounds} done ({time.perf_counter() - started:.0f} s)"
            )
    print(render(results, figures, args))


def _spread(values: list[float], fmt: str) -> str:
    return f"{format(min(values), fmt)}–{format(max(values), fmt)}"


def render(
    results: dict[tuple[str, str | None], list[dict[str, Any]]],
    figures: list[str],
    args: argparse.Namespace,
) -> str:
    awake = "CPUs kept awake (nice -n 19 spinners)" if args.spin else "idle CPUs"
    pin = "; server and client pinned to CPUs of their own" if args.pin else ""
    before = f"; before = {args.before}" if args.before else ""
    lines = [f"{args.rounds} interleaved rounds, {awake}{pin}{before}.", ""]

    def ok(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rounds if "error" not in r]

    for figure in figures:
        rows = [(n, s, r) for (n, s), r in results.items() if BY_NAME[n].figure == figure]
        if figure == "echo":
            lines += ["| client | p50 µs (median) | p50 spread | p99 µs (median) | × floor |"]
            lines += ["|---|---:|---:|---:|---:|"]
            floors = {
                BY_NAME[n].backend: statistics.median(r["p50_us"] for r in ok(rounds))
                for n, _, rounds in rows
                if n.startswith("floor-") and ok(rounds)
            }
        else:
            lines += ["| client | msg/s (median) | spread | × aiohttp + json.loads |"]
            lines += ["|---|---:|---:|---:|"]
            aiohttp = [ok(r) for n, _, r in rows if n == "aiohttp-trades"]
            reference = statistics.median(r["rate"] for r in aiohttp[0]) if aiohttp else None
        for name, src, rounds in rows:
            spec = BY_NAME[name]
            label = spec.label + (" — before" if src else "")
            good = ok(rounds)
            if not good:
                lines.append(f"| {label} | {rounds[0].get('error') if rounds else '—'} | | | |")
                continue
            if figure == "echo":
                p50s = [r["p50_us"] for r in good]
                p50 = statistics.median(p50s)
                floor = floors.get(spec.backend)
                ratio = f"{p50 / floor:.2f}" if floor else "—"
                p99 = statistics.median(r["p99_us"] for r in good)
                spread = _spread(p50s, ".1f")
                lines.append(f"| {label} | {p50:.1f} | {spread} | {p99:.1f} | {ratio} |")
            else:
                rates = [r["rate"] / 1000 for r in good]
                rate = statistics.median(rates)
                ratio = f"{rate * 1000 / reference:.2f}" if reference else "—"
                lines.append(f"| {label} | {rate:.0f} k | {_spread(rates, '.0f')} k | {ratio} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", choices=sorted(BY_NAME))
    parser.add_argument("--base")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--before", help="another source tree's src/ directory (PYTHONPATH)")
    parser.add_argument("--spin", action="store_true", help="keep every core awake")
    parser.add_argument("--pin", action="store_true", help="server and client on CPUs apart")
    parser.add_argument("--figures", default="echo,trades")
    args = parser.parse_args()
    if args.report:
        report(args)
        return
    spec = BY_NAME[args.client]
    print(json.dumps(_run(spec.backend, spec.run, args.base)), flush=True)


if __name__ == "__main__":
    main()
