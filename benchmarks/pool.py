"""The sharded pool: placing 10,000 subscriptions, and twenty merged firehoses vs one connection.

``python -m benchmarks.pool --backend asyncio|trio --scale-url ws://H:P --stream-url ws://H:P/text``
(one measurement; ``bash benchmarks/run.sh`` runs it for both backends and reports it), or
``python -m benchmarks.pool --report`` (start both servers, measure on both backends, and replace
the "Sharded pool" section of docs/benchmarks.md with this run's figures).

Prints one JSON line with two parts, both measured in this process, in this run:

- ``scale``: a pool subscribes ``SUBSCRIPTIONS`` channels on a venue (``python -m
  benchmarks.pool --serve-venue``, another process) that acknowledges each subscription, refuses
  any beyond ``PER_CONNECTION`` on one connection, and answers HTTP 429 to a connection opened
  when ``RATE[0]`` were opened within the last ``RATE[1]`` seconds. The pool is configured with the
  same limits. Reported: seconds from the first ``subscribe()`` call until every acknowledgement
  was read from the pool's merged stream; shards; the RSS growth of this process per shard (after
  a warm-up pool, so imports are not counted); the tasks per shard (event-loop tasks with the pool
  running minus before, divided by the shards); the venue's 429 and over-cap refusals.
- ``stream``: the benchmark server's ``/text`` firehose (100-byte JSON text frames, written as fast
  as the kernel takes them) read with ``async for`` (``decode=None``) for ``WINDOW`` seconds,
  either through one ``ManagedWebSocket`` or through a pool of ``SHARDS`` shards (one firehose
  each), in ``ROUNDS`` alternating rounds. Reported: messages per second for each round, and how
  the pool's total was shared among its shards.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
from collections import deque
from pathlib import Path
from time import perf_counter
from typing import Any

import anyio

from managed_websocket import ManagedWebSocketPool, open_managed_pool, open_managed_websocket

ROOT = Path(__file__).resolve().parent.parent
SUBSCRIPTIONS = 10_000
PER_CONNECTION = 1_024
RATE = (5, 1.0)
SHARDS = 20
WINDOW = 2.0
WARMUP = 0.5
ROUNDS = 3
STREAM_OPTIONS: dict[str, Any] = {
    "decode": None,
    "ping_interval": None,
    "queue_size": 10_000,
    "max_message_size": 1 << 20,
    "close_timeout": 1.0,
}


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def task_count() -> int:
    """Tasks alive in this event loop (asyncio or trio)."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # not asyncio: trio
        import trio

        def walk(task: Any) -> int:
            return 1 + sum(walk(child) for n in task.child_nurseries for child in n.child_tasks)

        return walk(trio.lowlevel.current_root_task())


# ------------------------------------------------------------------ the venue (its own process)


async def serve_venue() -> None:
    from managed_websocket.testing import ClientRecord, open_test_server

    channels: dict[int, int] = {}
    opened: deque[float] = deque()
    counters = {"rate_refusals": 0, "over_cap": 0}

    def authorize(record: ClientRecord) -> bool | int:
        now = anyio.current_time()
        while opened and opened[0] <= now - RATE[1]:
            opened.popleft()
        if len(opened) >= RATE[0]:
            counters["rate_refusals"] += 1
            return 429
        opened.append(now)
        return True

    async def on_message(record: ClientRecord, message: str | bytes) -> None:
        request = json.loads(message)
        if request.get("type") == "stats":
            await server.send(record, json.dumps({"type": "stats", **counters}))
            return
        if request.get("type") != "subscribe":
            return
        count = channels.get(record.index, 0)
        if count >= PER_CONNECTION:
            counters["over_cap"] += 1
            reply = {"type": "error", "channel": request["channel"], "code": "too_many"}
        else:
            channels[record.index] = count + 1
            reply = {"type": "subscribed", "channel": request["channel"]}
        await server.send(record, json.dumps(reply))

    async with open_test_server(echo=False) as server:
        server.authorize(authorize)
        server.on_message(on_message)
        print(f"PORT {server.port}", flush=True)
        await anyio.sleep_forever()


# ------------------------------------------------------------------ scale


async def _all_acknowledged(pool: ManagedWebSocketPool, count: int) -> int:
    acked = refused = 0
    async for batch in pool.batches():
        for message in batch:
            kind = message.get("type") if isinstance(message, dict) else None
            acked += kind == "subscribed"
            refused += kind == "error"
        if acked + refused >= count:
            return refused
    raise RuntimeError("the pool ended before every subscription was answered")


async def _venue_counters(url: str) -> dict[str, Any]:
    async with open_managed_websocket(url, reconnect_delay=0.5) as ws:
        await ws.send({"type": "stats"})
        async for message in ws:
            if isinstance(message, dict) and message.get("type") == "stats":
                return {k: v for k, v in message.items() if k != "type"}
    raise RuntimeError("no venue stats")


async def scale(url: str) -> dict[str, Any]:
    names = [f"sym{i}@trade" for i in range(SUBSCRIPTIONS)]
    # Warm-up: imports and first-use caches are not the pool's memory.
    async with open_managed_pool(
        url, max_subscriptions_per_connection=PER_CONNECTION, connect_rate=RATE
    ) as warm:
        await warm.subscribe("warm-up")
        await _all_acknowledged(warm, 1)
    await anyio.sleep(RATE[1])  # the warm-up dial leaves the venue's window
    venue_before = await _venue_counters(url)
    await anyio.sleep(RATE[1])
    gc.collect()
    rss_before, tasks_before = rss_bytes(), task_count()
    async with open_managed_pool(
        url, max_subscriptions_per_connection=PER_CONNECTION, connect_rate=RATE
    ) as pool:
        started = perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(pool.subscribe, *names)
            refused = await _all_acknowledged(pool, SUBSCRIPTIONS)
        seconds = perf_counter() - started
        gc.collect()
        rss_after, tasks_after = rss_bytes(), task_count()
        shards = len(pool.shards)
        reconnects = pool.stats.total.reconnect_attempts
    await anyio.sleep(RATE[1])
    venue_after = await _venue_counters(url)
    venue = {key: venue_after[key] - venue_before[key] for key in venue_after}
    return {
        "subscriptions": SUBSCRIPTIONS,
        "per_connection": PER_CONNECTION,
        "rate": list(RATE),
        "seconds_until_all_acknowledged": seconds,
        "shards": shards,
        "refused_by_venue": refused,
        "rss_per_shard": (rss_after - rss_before) / shards,
        "rss_growth": rss_after - rss_before,
        "tasks_per_shard": (tasks_after - tasks_before) / shards,
        "tasks_added": tasks_after - tasks_before,
        "dial_retries": reconnects,
        "venue": venue,  # what the venue refused while this pool subscribed
    }


# ------------------------------------------------------------------ merged stream


async def _count_for(iterator: Any) -> int:
    """Messages read from ``iterator`` in WINDOW seconds after WARMUP."""
    count = 0
    deadline = anyio.current_time() + WARMUP
    async for _ in iterator:
        count += 1
        if count & 1023 == 0 and anyio.current_time() >= deadline:
            break
    count = 0
    started = perf_counter()
    deadline = anyio.current_time() + WINDOW
    async for _ in iterator:
        count += 1
        if count & 1023 == 0 and anyio.current_time() >= deadline:
            break
    return round(count / (perf_counter() - started))


async def single(url: str) -> dict[str, Any]:
    async with open_managed_websocket(url, **STREAM_OPTIONS) as ws:
        return {"msg_per_s": await _count_for(aiter(ws))}


async def pooled(url: str) -> dict[str, Any]:
    async with open_managed_pool(
        url,
        max_subscriptions_per_connection=1,
        connect_rate=(SHARDS, 0.5),  # the benchmark server has no rate limit
        **STREAM_OPTIONS,
    ) as pool:
        await pool.subscribe(*(f"firehose{i}" for i in range(SHARDS)))
        stream = pool.stream()
        rate = await _count_for(stream)
        per_shard = [stats.messages_received for stats in pool.stats.shards.values()]
    return {
        "msg_per_s": rate,
        "shards": len(per_shard),
        "received_min_share": min(per_shard) / sum(per_shard),
        "received_max_share": max(per_shard) / sum(per_shard),
    }


async def stream(url: str) -> dict[str, Any]:
    rounds: dict[str, list[dict[str, Any]]] = {"single": [], "pool": []}
    for _ in range(ROUNDS):
        rounds["single"].append(await single(url))
        rounds["pool"].append(await pooled(url))
    return rounds


async def main_async(scale_url: str, stream_url: str) -> dict[str, Any]:
    return {"scale": await scale(scale_url), "stream": await stream(stream_url)}


# ------------------------------------------------------------------ the report


SECTION = "## Sharded pool"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def render(results: list[tuple[str, dict[str, Any]]], note: str = "") -> list[str]:
    """The markdown section for one run's results (one (backend, result) per backend)."""
    lines = [SECTION, ""]
    if note:
        lines += [note, ""]
    lines += [
        (
            f"{SUBSCRIPTIONS:,} subscriptions on a local venue that allows {PER_CONNECTION:,} per "
            f"connection and {RATE[0]} new connections per {RATE[1]:g} s (HTTP 429 beyond); the "
            "pool has the same limits. Time: from the first `subscribe()` call until every "
            "acknowledgement was read from the merged stream."
        ),
        "",
        (
            "| backend | all acknowledged s | shards | RSS per shard KiB | tasks per shard "
            "| tasks added | 429s | refused over cap | dial retries |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for backend, result in results:
        if "error" in result:
            lines.append(f"| {backend} | {result['error']} |  |  |  |  |  |  |  |")
            continue
        sc = result["scale"]
        lines.append(
            f"| {backend} | {sc['seconds_until_all_acknowledged']:.2f} | {sc['shards']} "
            f"| {sc['rss_per_shard'] / 1024:.0f} | {sc['tasks_per_shard']:.2f} "
            f"| {sc['tasks_added']} | {sc['venue']['rate_refusals']} "
            f"| {sc['venue']['over_cap']} | {sc['dial_retries']} |"
        )
    lines += [
        "",
        (
            f"Merged throughput: {SHARDS} shards, each reading the `/text` firehose flat out, "
            "merged and read with `async for` (`decode=None`), against one `ManagedWebSocket` "
            f"reading the same firehose with `async for`; {WINDOW:g} s windows after {WARMUP:g} s "
            f"of warm-up, {ROUNDS} alternating rounds in this run, medians."
        ),
        "",
        (
            "| backend | one connection msg/s | pool of 20 msg/s | pool / one | rounds (one; pool) "
            "| smallest / largest shard share |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for backend, result in results:
        if "error" in result:
            lines.append(f"| {backend} | {result['error']} |  |  |  |  |")
            continue
        single = [r["msg_per_s"] for r in result["stream"]["single"]]
        pooled = [r["msg_per_s"] for r in result["stream"]["pool"]]
        shares = result["stream"]["pool"]
        low = min(r["received_min_share"] for r in shares)
        high = max(r["received_max_share"] for r in shares)
        ratio = _median(pooled) / _median(single)
        lines.append(
            f"| {backend} | {_median(single):,.0f} | {_median(pooled):,.0f} | {ratio:.2f}× "
            f"| {', '.join(f'{v:,}' for v in single)}; {', '.join(f'{v:,}' for v in pooled)} "
            f"| {low:.1%} / {high:.1%} |"
        )
    lines.append("")
    return lines


def _replace_section(text: str, section: list[str]) -> str:
    """``text`` with its SECTION replaced by ``section`` (or ``section`` inserted before the
    spread table, when the report has none yet)."""
    lines = text.splitlines()
    if SECTION in lines:
        start = lines.index(SECTION)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
    else:
        marker = "## Peer packages"
        start = end = lines.index(marker) if marker in lines else len(lines)
    return "\n".join([*lines[:start], *section, *lines[end:]]) + "\n"


def _started(module_args: list[str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", *module_args], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, f"ws://127.0.0.1:{proc.stdout.readline().split()[1]}"


def measure(stream_base: str) -> list[tuple[str, dict[str, Any]]]:
    """Start the venue, measure on both backends (one process each) against it and the
    benchmark server at ``stream_base``; (backend, result or {"error": ...}) per backend."""
    venue, venue_url = _started(["benchmarks.pool", "--serve-venue"])
    results: list[tuple[str, dict[str, Any]]] = []
    try:
        for backend in ("asyncio", "trio"):
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.pool", "--backend", backend]
                + ["--scale-url", venue_url, "--stream-url", f"{stream_base}/text"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            lines = (done.stdout if done.returncode == 0 else done.stderr).strip().splitlines()
            if done.returncode or not lines:
                results.append((backend, {"error": lines[-1] if lines else "no output"}))
            else:
                results.append((backend, json.loads(lines[-1])))
            print(f"[bench] pool {backend}: {results[-1][1]}", file=sys.stderr, flush=True)
    finally:
        venue.terminate()
        venue.wait()
    return results


def report(output: Path) -> None:
    """Start the benchmark server, :func:`measure`, replace the section in ``output``."""
    from . import machine

    server, base = _started(["benchmarks.server"])
    try:
        info = machine.describe(ROOT)
        load_before = machine.load("start")
        results = measure(base)
        load_after = machine.load("end")
    finally:
        server.terminate()
        server.wait()
    note = (
        f"Measured by `python -m benchmarks.pool --report` at {info.started} (UTC), source "
        f"{info.source}, a run of its own (not the run of the tables above); load average "
        f"{load_before}; {load_after}."
    )
    output.write_text(_replace_section(output.read_text(), render(results, note)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve-venue", action="store_true")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--scale-url")
    parser.add_argument("--stream-url")
    args = parser.parse_args()
    if args.serve_venue:
        anyio.run(serve_venue)
        return
    if args.report:
        report(args.output)
        return
    if not (args.scale_url and args.stream_url):
        parser.error("--scale-url and --stream-url are required")
    result = anyio.run(main_async, args.scale_url, args.stream_url, backend=args.backend)
    print(json.dumps({"backend": args.backend, **result}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
