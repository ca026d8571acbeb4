"""Run one benchmark client in this process and print its measurements as one JSON line.

``python -m benchmarks.client --client NAME --base ws://127.0.0.1:PORT [--figures text,echo]``

Figures: ``text`` (100-byte text firehose, messages/s), ``binary`` (64 KiB binary firehose,
bytes/s), ``echo`` (sequential round trips of a 100-byte text message), ``deflate`` (the text
firehose compressed with permessage-deflate, messages/s; run by ``benchmarks.deflate``, not part of
the main suite's table). Each figure opens its own
connection and event loop; a figure that fails reports ``{"error": ...}`` and the rest still run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

from . import wire
from .clients import BY_NAME, Backend
from .clients.common import Client, Count, Echo, EchoPlan, StreamPlan

TEXT_PLAN = StreamPlan(warmup=10_000, seconds=1.0, check_every=256)
BINARY_PLAN = StreamPlan(warmup=32, seconds=1.0, check_every=4)
ECHO_PLAN = EchoPlan(warmup=500, rounds=5_000)
FIGURES = ("text", "binary", "echo")


def run(backend: Backend, func: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    if backend == "trio":
        import trio

        return trio.run(func, *args)
    return asyncio.run(func(*args))


def describe(sample: Any) -> str:
    if isinstance(sample, list):
        return f"list of {describe(sample[0])}" if sample else "empty list"
    if isinstance(sample, str | bytes | dict):
        return f"{type(sample).__name__}[{len(sample)}]"
    return type(sample).__name__


def check(figure: str, sample: Any) -> None:
    """Raise unless ``sample`` (the last message) is what a real client of ``figure`` returns."""
    if isinstance(sample, list) and sample:
        sample = sample[-1]
    if sample is None:
        return  # a raw floor: no messages
    if figure == "binary":
        ok = isinstance(sample, bytes) and len(sample) == wire.BINARY_PAYLOAD_SIZE
    else:
        ok = isinstance(sample, dict) or (
            isinstance(sample, str) and len(sample) == wire.TEXT_PAYLOAD_SIZE
        )
    if not ok:
        raise ValueError(f"unexpected message: {describe(sample)}")


def percentile(sorted_values: list[int], fraction: float) -> int:
    """Nearest-rank percentile of already sorted values."""
    return sorted_values[max(math.ceil(fraction * len(sorted_values)) - 1, 0)]


def stream_result(count: Count) -> dict[str, Any]:
    return {
        "messages": count.messages,
        "wire_bytes": count.wire_bytes,
        "seconds": count.seconds,
        "sample": describe(count.sample),
        "note": count.note,
    }


def echo_result(echo: Echo) -> dict[str, Any]:
    times = sorted(echo.round_trips_ns)
    return {
        "rounds": len(times),
        "p50_us": statistics.median(times) / 1000,
        "p99_us": percentile(times, 0.99) / 1000,
        "sample": describe(echo.sample),
        "note": echo.note,
    }


def measure(backend: Backend, client: Client, figure: str, base: str) -> dict[str, Any]:
    url = f"{base}/{figure}"
    if figure == "echo":
        echo: Echo = run(backend, client.echo, url, ECHO_PLAN)
        check(figure, echo.sample)
        return echo_result(echo)
    plan = BINARY_PLAN if figure == "binary" else TEXT_PLAN
    count: Count = run(backend, client.stream, url, plan)
    check(figure, count.sample)
    return stream_result(count)


def measure_or_error(backend: Backend, client: Client, figure: str, base: str) -> dict[str, Any]:
    try:
        return measure(backend, client, figure, base)
    except Exception as exc:  # noqa: BLE001 - reported in the table, never hidden
        return {"error": f"{type(exc).__name__}: {exc}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", required=True, choices=sorted(BY_NAME))
    parser.add_argument("--base", required=True, help="ws://host:port of benchmarks.server")
    parser.add_argument("--figures", default=",".join(FIGURES))
    args = parser.parse_args()
    spec = BY_NAME[args.client]
    client = spec.load()
    results = {
        figure: measure_or_error(spec.backend, client, figure, args.base)
        for figure in args.figures.split(",")
    }
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
