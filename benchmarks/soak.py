"""Soak test: a flapping server for N minutes while a managed connection consumes a tick feed.

    python benchmarks/soak.py --minutes 10 --backend trio

A child process runs the package's test server: it broadcasts a sequenced tick every 10 ms, and
every few seconds something goes wrong — the server drops the connection (FIN), resets it (RST),
closes it with 1013 or 1011, refuses upgrades with 503 for a moment, or flaps. In this process a
manager subscribed to the feed consumes every message. Every ``--sample`` seconds the script
samples connects, disconnects, the reconnect delays seen (disconnect → next connect), messages
received, RSS (``VmRSS`` from ``/proc/self/status``) and the number of live tasks, and prints a
table row. (The server lives in its own process because it keeps a record of every connection
it ever accepted: in this one, its bookkeeping would count as the manager's growth.)

It exits with status 1 if RSS grew by more than ``--max-rss-growth`` (20 %) from the first third
of the samples to the last third, if the task count grew (the most tasks seen in the last third
above the most in the first third), or if any sample interval saw no message at all (the manager
stopped recovering). Not part of the test run: it takes minutes.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import logging
import statistics
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import PIPE
from typing import Any

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

from managed_websocket import DisconnectReason, open_managed_websocket
from managed_websocket.testing import WebSocketTestServer, open_test_server

TICK_INTERVAL = 0.01


def rss_kib() -> int:
    """This process's resident set size in KiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def task_count(backend: str) -> int:
    """Live tasks: asyncio's task set, or trio's task tree walked from the root task."""
    if backend == "asyncio":
        import asyncio

        return len(asyncio.all_tasks())
    import trio.lowlevel

    count = 0
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None:
            continue
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


@dataclass
class Observed:
    """What the manager reported, since the start and since the last sample."""

    connects: int = 0
    disconnects: int = 0
    messages: int = 0
    gaps: int = 0  # ticks that never arrived (expected: the feed runs on while we reconnect)
    last_seq: int = -1
    down_since: float | None = None
    delays: list[float] = field(default_factory=list)  # disconnect → connect, this interval
    reasons: dict[str, int] = field(default_factory=dict)

    def on_connect(self) -> None:
        self.connects += 1
        if self.down_since is not None:
            self.delays.append(anyio.current_time() - self.down_since)
            self.down_since = None

    def on_disconnect(self, reason: DisconnectReason) -> None:
        self.disconnects += 1
        self.down_since = anyio.current_time()
        self.reasons[reason.name] = self.reasons.get(reason.name, 0) + 1

    def on_tick(self, seq: int) -> None:
        self.messages += 1
        if self.last_seq >= 0 and seq > self.last_seq + 1:
            self.gaps += seq - self.last_seq - 1
        self.last_seq = max(self.last_seq, seq)


@dataclass(frozen=True)
class Sample:
    at: float
    connects: int
    disconnects: int
    messages: int
    delay_mean: float | None
    delay_max: float | None
    rss_kib: int
    tasks: int


async def tick_feed(server: WebSocketTestServer) -> None:
    for seq in itertools.count():
        await server.broadcast(json.dumps({"type": "tick", "seq": seq}))
        await anyio.sleep(TICK_INTERVAL)


def _faults(server: WebSocketTestServer) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
    async def refuse_503() -> None:
        server.refuse_handshakes(503, [("Retry-After", "1")], body=b"busy", count=2)
        await server.drop_clients()

    async def flap() -> None:
        server.flap(count=2, code=1000)
        await server.drop_clients()

    return [
        ("drop (FIN)", server.drop_clients),
        ("close 1013", lambda: server.close_clients(1013, "try again later")),
        ("close 1011", lambda: server.close_clients(1011, "internal error")),
        ("refuse 503", refuse_503),
        ("reset (RST)", server.reset_clients),
        ("flap x2", flap),
    ]


async def chaos(server: WebSocketTestServer, every: float, injected: dict[str, int]) -> None:
    for name, fault in itertools.cycle(_faults(server)):
        await anyio.sleep(every)
        await fault()
        injected[name] = injected.get(name, 0) + 1


async def serve(every: float) -> None:
    """The server process: print ``PORT <n>``, run the feed and the faults until stdin closes,
    then print the faults injected (a JSON line)."""
    injected: dict[str, int] = {}
    async with open_test_server(echo=False) as server, anyio.create_task_group() as tg:
        tg.start_soon(tick_feed, server)
        tg.start_soon(chaos, server, every, injected)
        print(f"PORT {server.port}", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)  # until the parent closes our stdin
        tg.cancel_scope.cancel()
    print(json.dumps(injected), flush=True)


@asynccontextmanager
async def server_process(backend: str, every: float) -> AsyncIterator[tuple[int, list[str]]]:
    """Start the server process; yield its port and a list that gets its final line."""
    command = [sys.executable, __file__, "--serve", "--backend", backend]
    command += ["--fault-every", str(every)]
    final: list[str] = []
    async with await anyio.open_process(command, stdin=PIPE, stdout=PIPE) as process:
        assert process.stdout is not None
        assert process.stdin is not None
        lines = BufferedByteReceiveStream(process.stdout)
        first = (await lines.receive_until(b"\n", 1000)).decode()
        if not first.startswith("PORT "):
            raise RuntimeError(f"unexpected output from the server process: {first!r}")
        try:
            yield int(first.split()[1]), final
        finally:
            with anyio.CancelScope(shield=True):
                await process.stdin.aclose()
                with anyio.move_on_after(10):
                    final.append((await lines.receive_until(b"\n", 100_000)).decode())
                    await process.wait()
                if process.returncode is None:
                    process.kill()


async def consume(ws: Any, observed: Observed) -> None:
    async for message in ws:
        if isinstance(message, dict) and message.get("type") == "tick":
            observed.on_tick(int(message["seq"]))


def print_row(sample: Sample, previous: Sample | None) -> None:
    p = previous or Sample(0.0, 0, 0, 0, None, None, 0, 0)

    def ms(value: float | None) -> str:
        return "     -" if value is None else f"{value * 1000:6.0f}"

    print(
        f"{sample.at:7.0f} {sample.connects - p.connects:8d} {sample.disconnects - p.disconnects:8d}"
        f" {sample.messages - p.messages:9d} {ms(sample.delay_mean)} {ms(sample.delay_max)}"
        f" {sample.rss_kib / 1024:9.1f} {sample.tasks:6d}",
        flush=True,
    )


async def soak(minutes: float, backend: str, interval: float, every: float) -> list[Sample]:
    observed = Observed()
    samples: list[Sample] = []
    print(
        f"soak: {minutes:g} min on {backend}, a fault every {every:g} s, a sample every"
        f" {interval:g} s"
    )
    print(
        "   time connects  disconn  messages  delay   dmax  RSS(MiB)  tasks\n"
        "    (s)    (+)      (+)       (+)    mean(ms) max(ms)"
    )
    async with (
        server_process(backend, every) as (port, final),
        anyio.create_task_group() as tg,
    ):
        async with open_managed_websocket(
            f"ws://127.0.0.1:{port}/ws",
            reconnect_delay=0.05,
            max_reconnect_delay=1.0,
            reconnect_jitter=0.5,
            max_reconnect_attempts=None,
            stable_connection_time=2.0,
            server_unavailable_delay=0.5,
            ping_interval=1.0,
            ping_timeout=1.0,
            connection_timeout=5.0,
            close_timeout=1.0,
            on_connect=observed.on_connect,
            on_disconnect=observed.on_disconnect,
        ) as ws:
            await ws.subscribe("ticks")
            tg.start_soon(consume, ws, observed)
            started = anyio.current_time()
            previous: Sample | None = None
            for n in range(1, int(minutes * 60 / interval) + 1):
                await anyio.sleep(started + n * interval - anyio.current_time())
                delays, observed.delays = observed.delays, []
                sample = Sample(
                    at=anyio.current_time() - started,
                    connects=observed.connects,
                    disconnects=observed.disconnects,
                    messages=observed.messages,
                    delay_mean=statistics.fmean(delays) if delays else None,
                    delay_max=max(delays) if delays else None,
                    rss_kib=rss_kib(),
                    tasks=task_count(backend),
                )
                print_row(sample, previous)
                samples.append(sample)
                previous = sample
            stats = copy.copy(ws.stats)  # before the shutdown adds its own disconnect
        tg.cancel_scope.cancel()
    print(
        f"\nfaults injected: {final[0].strip() if final else '?'}\n"
        f"disconnect reasons: {observed.reasons}\n"
        f"manager stats: connects={stats.connects} disconnects={stats.disconnects}"
        f" reconnect_attempts={stats.reconnect_attempts}"
        f" messages_received={stats.messages_received}"
        f" callback_errors={stats.callback_errors}; ticks missed while down: {observed.gaps}"
    )
    return samples


def verdict(samples: list[Sample], max_rss_growth: float) -> list[str]:
    """The reasons to fail, if any."""
    problems: list[str] = []
    if len(samples) < 3:
        return ["too few samples to judge (run longer or sample more often)"]
    third = len(samples) // 3
    first, last = samples[:third], samples[-third:]
    rss_first = statistics.fmean(s.rss_kib for s in first)
    rss_last = statistics.fmean(s.rss_kib for s in last)
    growth = rss_last / rss_first - 1
    tasks_first = max(s.tasks for s in first)
    tasks_last = max(s.tasks for s in last)
    print(
        f"RSS: first third {rss_first / 1024:.1f} MiB, last third {rss_last / 1024:.1f} MiB"
        f" ({growth:+.1%}); tasks (most seen): first third {tasks_first}, last third {tasks_last}"
    )
    if growth > max_rss_growth:
        problems.append(f"RSS grew {growth:.1%} (> {max_rss_growth:.0%})")
    if tasks_last > tasks_first:
        problems.append(f"task count grew from {tasks_first} to {tasks_last}")
    quiet = [s.at for prev, s in itertools.pairwise(samples) if s.messages == prev.messages]
    if samples[0].messages == 0:
        quiet.insert(0, samples[0].at)
    if quiet:
        problems.append(f"no message at all in the intervals ending at {quiet} s")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--fault-every", type=float, default=3.0, help="seconds between faults")
    parser.add_argument("--max-rss-growth", type=float, default=0.20)
    parser.add_argument("--log-level", default="ERROR", help="of the managed_websocket logger")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        anyio.run(serve, args.fault_every, backend=args.backend)
        return 0
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("managed_websocket").setLevel(args.log_level.upper())
    samples = anyio.run(
        soak, args.minutes, args.backend, args.sample, args.fault_every, backend=args.backend
    )
    problems = verdict(samples, args.max_rss_growth)
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        print("OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
