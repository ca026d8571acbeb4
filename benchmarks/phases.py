"""Where the time of one echo round trip goes, phase by phase (``python -m benchmarks.phases``).

The budget (``benchmarks.budget``) times each CPU piece alone; this times the pieces in place,
in real round trips. Every client reads and writes through :class:`TimedStream`, a byte stream
that stamps ``perf_counter_ns`` around each ``receive`` and ``send`` of the stream it wraps (for
the managed clients: the connection's own stream, swapped in after the handshake). With ``t0``
the start of a round trip and ``t_end`` its end in the caller, each round trip splits into:

- **before the write**: ``t0`` → the stream's ``send`` is called (encode, mask, locks);
- **write**: inside the stream's ``send`` (anyio and the ``send`` system call);
- **before the read**: ``send`` returned → the stream's ``receive`` is called (the inbox, the
  hand-over of the socket, the cancel scope of an interruptible wait);
- **wait**: inside the stream's ``receive`` (the server, both processes' wake-ups, anyio and the
  ``recv`` system call);
- **after the read**: ``receive`` returned → ``t_end`` (leaving the cancel scope, parsing,
  delivering, the inbox, returning to the caller).

The floor is the raw anyio stream of ``benchmarks.ab`` (a pre-masked frame, the reply's bytes),
through the same wrapper, so the wrapper's own cost (four clock readings) is in every row.
Clients run in their own processes, in interleaved rounds, with ``--spin`` keeping the cores
awake; each cell is the median over rounds of the per-process median (µs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Awaitable, Callable
from time import perf_counter_ns
from typing import Any

import anyio
import anyio.abc

from .ab import (
    ECHO_PLAN,
    MANAGED_ECHO_OPTIONS,
    ROOT,
    _run,
    cpus,
    managed_round_trips,
    pinned,
    progress,
    running_server,
    spinners,
)
from .clients.common import READ_SIZE
from .clients.raw import ECHO_FRAME, ECHO_REPLY_SIZE, AnyioFloor

PHASES = ("before the write", "write", "before the read", "wait", "after the read")


class TimedStream(anyio.abc.ByteStream):
    """Stamps the last ``send`` and the last ``receive`` of the stream it wraps."""

    def __init__(self, inner: anyio.abc.ByteStream) -> None:
        self.inner = inner
        self.send_called = self.send_returned = 0
        self.receive_called = self.receive_returned = 0

    async def receive(self, max_bytes: int = 65536) -> bytes:
        self.receive_called = perf_counter_ns()
        try:
            return await self.inner.receive(max_bytes)
        finally:
            self.receive_returned = perf_counter_ns()

    async def send(self, item: bytes) -> None:
        self.send_called = perf_counter_ns()
        try:
            await self.inner.send(item)
        finally:
            self.send_returned = perf_counter_ns()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Any:
        return self.inner.extra_attributes


class Phases:
    def __init__(self) -> None:
        self.samples: dict[str, list[int]] = {name: [] for name in (*PHASES, "total")}

    def add(self, t0: int, stream: TimedStream, t_end: int) -> None:
        values = (
            stream.send_called - t0,
            stream.send_returned - stream.send_called,
            stream.receive_called - stream.send_returned,
            stream.receive_returned - stream.receive_called,
            t_end - stream.receive_returned,
            t_end - t0,
        )
        for name, value in zip((*PHASES, "total"), values, strict=True):
            self.samples[name].append(value)

    def result(self) -> dict[str, float]:
        return {name: statistics.median(values) / 1000 for name, values in self.samples.items()}


async def _floor(base: str) -> dict[str, float]:
    raw, _ = await AnyioFloor()._open(f"{base}/echo")
    stream = TimedStream(raw)
    phases = Phases()
    async with raw:
        for index in range(ECHO_PLAN.warmup + ECHO_PLAN.rounds):
            t0 = perf_counter_ns()
            await stream.send(ECHO_FRAME)
            got = 0
            while got < ECHO_REPLY_SIZE:  # one read in practice: the reply is 102 bytes
                got += len(await stream.receive(READ_SIZE))
            if index >= ECHO_PLAN.warmup:
                phases.add(t0, stream, perf_counter_ns())
    return phases.result()


async def _managed(base: str, request: bool) -> dict[str, float]:
    from managed_websocket import open_managed_websocket

    phases = Phases()
    async with open_managed_websocket(f"{base}/echo", **MANAGED_ECHO_OPTIONS) as ws:
        conn = ws._session.primary.conn
        stream = conn._stream = TimedStream(conn._stream)
        await managed_round_trips(ws, request, lambda t0, t_end: phases.add(t0, stream, t_end))
    return phases.result()


CLIENTS: dict[str, tuple[str, Callable[[str], Awaitable[dict[str, float]]]]] = {
    f"{label} ({backend})": (backend, run)
    for backend in ("asyncio", "trio")
    for label, run in (
        ("floor: raw anyio stream", _floor),
        ("managed send + receive", lambda base: _managed(base, request=False)),
        ("managed request()", lambda base: _managed(base, request=True)),
    )
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spin", action="store_true", help="keep every core awake")
    parser.add_argument("--pin", action="store_true", help="server and client on CPUs apart")
    parser.add_argument("--before", help="also the managed clients from this source tree")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        backend, run = CLIENTS[args.client]
        print(json.dumps(_run(backend, run, args.base)))
        return
    runs = [(name, None) for name in CLIENTS]
    if args.before:
        runs += [(name, args.before) for name in CLIENTS if name.startswith("managed")]
    results: dict[tuple[str, str | None], list[dict[str, float]]] = {run: [] for run in runs}
    server_cpu, client_cpu = cpus(args.pin)
    with running_server(server_cpu) as base, spinners(args.spin):
        for round_ in range(args.rounds):
            for name, src in runs if round_ % 2 == 0 else runs[::-1]:
                env = {**os.environ, "PYTHONPATH": src} if src else None
                command = [sys.executable, "-m", "benchmarks.phases", "--client", name]
                label = name + (" — before" if src else "")
                try:
                    out = subprocess.run(
                        [*pinned(client_cpu), *command, "--base", base],
                        cwd=ROOT,
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=60,
                        check=True,
                    )
                except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as exc:
                    progress(f"round {round_ + 1} {label}: failed ({type(exc).__name__})")
                    continue
                results[(name, src)].append(json.loads(out.stdout.splitlines()[-1]))
                progress(f"round {round_ + 1} {label}: {results[(name, src)][-1]['total']:.1f} µs")
    print(f"| client | {' | '.join(PHASES)} | sum | round trip |")
    print(f"|---|{'---:|' * (len(PHASES) + 2)}")
    for (name, src), rounds in results.items():
        if not rounds:
            print(f"| {name}{' — before' if src else ''} | every round failed |")
            continue
        cells = {key: statistics.median(run[key] for run in rounds) for key in (*PHASES, "total")}
        row = " | ".join(f"{cells[phase]:.1f}" for phase in PHASES)
        label = name + (" — before" if src else "")
        total = cells["total"]
        print(f"| {label} | {row} | {sum(cells[p] for p in PHASES):.1f} | {total:.1f} |")


if __name__ == "__main__":
    main()
