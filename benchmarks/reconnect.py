"""Reconnect latency of a managed connection with ``ReconnectStrategy.IMMEDIATE``.

``python -m benchmarks.reconnect --backend asyncio --url ws://HOST:PORT/drop --samples 50``

The server's ``/drop`` mode greets each connection with the monotonic time at which it dropped
this client's previous connection; the client asks for a drop (the text message ``drop``), the
server notes the time and closes the TCP connection without a close frame, the manager
reconnects, and the greeting on the new connection is the first message after the drop.
Latency = arrival of that greeting - the server's drop time. Both read ``CLOCK_MONOTONIC``
(``time.monotonic``), which is one clock for every process on a Linux machine.

``max_reconnect_attempts=None``: connections that last milliseconds never count as stable, so
with the default (10) the manager would give up after ten drops in a row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import time
import uuid
from typing import Any

from managed_websocket import ReconnectStrategy, open_managed_websocket


async def measure(url: str, samples: int, warmup: int) -> list[float]:
    delays: list[float] = []
    async with open_managed_websocket(
        url,
        reconnect_strategy=ReconnectStrategy.IMMEDIATE,
        max_reconnect_attempts=None,
        ping_interval=None,
    ) as ws:
        async for greeting in ws:
            arrived = time.monotonic()
            if greeting["dropped_at"] is not None:
                delays.append(arrived - greeting["dropped_at"])
            if len(delays) >= warmup + samples:
                break
            await ws.send("drop")
    return delays[warmup:]


def summary(delays: list[float]) -> dict[str, Any]:
    ms = sorted(delay * 1000 for delay in delays)
    return {
        "samples": len(ms),
        "median_ms": statistics.median(ms),
        "min_ms": ms[0],
        "p90_ms": ms[int(0.9 * (len(ms) - 1))],
        "max_ms": ms[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("asyncio", "trio"), required=True)
    parser.add_argument("--url", required=True, help="the server's /drop URL")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    # The manager logs every disconnect at WARNING; with no handler configured Python would print
    # each one to stderr. An application has logging configured; here it goes nowhere.
    logging.getLogger("managed_websocket").addHandler(logging.NullHandler())
    url = f"{args.url}?id={uuid.uuid4().hex}"
    if args.backend == "trio":
        import trio

        delays = trio.run(measure, url, args.samples, args.warmup)
    else:
        delays = asyncio.run(measure(url, args.samples, args.warmup))
    print(json.dumps(summary(delays)), flush=True)


if __name__ == "__main__":
    main()
