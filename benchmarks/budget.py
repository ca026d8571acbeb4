"""The CPU pieces of one echo round trip, timed one by one (``python -m benchmarks.budget``).

Each piece runs ``N`` times in a loop on each backend and reports ns per call (the best of
``REPEAT`` runs, so these are floors: the same code in a round trip also pays cache misses).
The pieces: building and masking the frame, taking and releasing the send and read locks (each
costs a cancellation check), parsing the echo's frame, the session's bookkeeping for one
received message, and handing it through the inbox to the consumer. docs/benchmarks.md sets
them against the measured round trips (``python -m benchmarks.ab``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.lowlevel import checkpoint_if_cancelled

from managed_websocket._frames import OP_TEXT, FrameReader, encode_frame
from managed_websocket._manager._inbox import Inbox
from managed_websocket._models import WebSocketStats
from managed_websocket._sync import FastLock

from .wire import ECHO_TEXT, frame

N = 20_000
REPEAT = 5
PAYLOAD = ECHO_TEXT.encode()
SERVER_FRAME = frame(OP_TEXT, PAYLOAD)


def best(run: Callable[[], float]) -> float:
    return min(run() for _ in range(REPEAT))


def timed_sync(body: Callable[[], Any]) -> float:
    def run() -> float:
        start = time.perf_counter_ns()
        for _ in range(N):
            body()
        return (time.perf_counter_ns() - start) / N

    return best(run)


async def timed_async(body: Callable[[], Awaitable[Any]]) -> float:
    results = []
    for _ in range(REPEAT):
        start = time.perf_counter_ns()
        for _ in range(N):
            await body()
        results.append((time.perf_counter_ns() - start) / N)
    return min(results)


def parse_one() -> None:
    reader = FrameReader(1 << 20)
    reader.receive_data(SERVER_FRAME)
    reader.events()


async def pieces() -> dict[str, float]:
    lock = FastLock()

    async def lock_cycle() -> None:
        async with lock:
            pass

    inbox = Inbox(1000, "block")

    async def inbox_cycle() -> None:
        inbox.put_nowait([ECHO_TEXT])
        await inbox.get()

    def scope_cycle() -> None:
        with anyio.CancelScope(deadline=float("inf")):  # noqa: ASYNC100 - its cost alone
            pass

    stats = WebSocketStats(clock=anyio.current_time)
    batch = [ECHO_TEXT]

    def bookkeeping() -> None:
        stats.record_received(len(batch), sum(map(len, batch)))

    return {
        "frame encode + mask (100 B)": timed_sync(lambda: encode_frame(OP_TEXT, PAYLOAD)),
        "str -> UTF-8 (100 B)": timed_sync(ECHO_TEXT.encode),
        "cancellation check (checkpoint_if_cancelled)": await timed_async(checkpoint_if_cancelled),
        "FastLock acquire + release (send lock; read lock alike)": await timed_async(lock_cycle),
        "cancel scope enter + exit (read_batch's interruptible wait)": timed_sync(scope_cycle),
        "frame parse (FrameReader, one 100 B frame)": timed_sync(parse_one),
        "stats.record_received": timed_sync(bookkeeping),
        "inbox put_nowait + get (one message)": await timed_async(inbox_cycle),
        "json.loads (100 B, for scale)": timed_sync(lambda: json.loads(ECHO_TEXT)),
    }


def main() -> None:
    import trio

    on_asyncio = asyncio.run(pieces())
    on_trio = trio.run(pieces)
    print("| piece | asyncio ns | trio ns |")
    print("|---|---:|---:|")
    for name, value in on_asyncio.items():
        print(f"| {name} | {value:.0f} | {on_trio[name]:.0f} |")


if __name__ == "__main__":
    main()
