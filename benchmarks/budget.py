"""The CPU pieces of one echo round trip, timed one by one (``python -m benchmarks.budget``).

Each piece runs ``N`` times in a loop on each backend and reports ns per call (the best of
``REPEAT`` runs, so these are floors: the same code in a round trip also pays cache misses).
The pieces: building and masking the frame, taking and releasing the send and read locks (each
costs a cancellation check), parsing the echo's frame, the session's bookkeeping for one
received message, and handing it through the inbox to the consumer. docs/benchmarks.md sets
them against the measured round trips (``python -m benchmarks.ab``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
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

    backend_scope = type(anyio.CancelScope())  # as the connection makes its wait's scope

    def backend_scope_cycle() -> None:
        with backend_scope(deadline=float("inf")):
            pass

    stats = WebSocketStats(clock=anyio.current_time)
    batch = [ECHO_TEXT]

    def bookkeeping() -> None:
        stats.record_received(len(batch), sum(map(len, batch)))

    return {
        "frame encode + mask (100 B)": timed_sync(lambda: encode_frame(OP_TEXT, PAYLOAD)),
        "str -> UTF-8 (100 B)": timed_sync(ECHO_TEXT.encode),
        "cancellation check (checkpoint_if_cancelled)": await timed_async(checkpoint_if_cancelled),
        "FastLock acquire + release, with its check (TLS sends; reads and TCP sends skip it)": await timed_async(
            lock_cycle
        ),
        "anyio.CancelScope(): make, enter, exit": timed_sync(scope_cycle),
        "the same, made once (read_batch's interruptible wait)": timed_sync(backend_scope_cycle),
        "frame parse (FrameReader, one 100 B frame)": timed_sync(parse_one),
        "stats.record_received": timed_sync(bookkeeping),
        "inbox put_nowait + get (one message)": await timed_async(inbox_cycle),
        "json.loads (100 B, for scale)": timed_sync(lambda: json.loads(ECHO_TEXT)),
    }


class LoopbackEcho(anyio.abc.ByteStream):
    """A byte stream that answers every write with the echo's frame, at once: a round trip with
    no system call, no other process and no wake-up, so what is left is the client's own CPU."""

    def __init__(self) -> None:
        self._replies: deque[bytes] = deque()
        self._arrived: anyio.Event | None = None

    async def send(self, item: bytes) -> None:
        self._replies.append(SERVER_FRAME)
        if self._arrived is not None:
            self._arrived.set()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while not self._replies:
            self._arrived = anyio.Event()
            await self._arrived.wait()
            self._arrived = None
        return self._replies.popleft()

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def round_trips(profile: str | None = None) -> dict[str, float]:
    """ns per round trip on :class:`LoopbackEcho`: the floor (write the frame, read the reply),
    the managed client's send + receive and its request(). ``profile`` (a client's name): run
    that one under cProfile and print where its time goes."""
    from managed_websocket import open_managed_websocket
    from managed_websocket.testing import open_test_server

    floor = LoopbackEcho()
    request = ECHO_TEXT.encode()

    async def floor_round_trip() -> None:
        await floor.send(request)
        await floor.receive()

    results = {"floor (the same stream, no WebSocket)": await timed_async(floor_round_trip)}
    options: dict[str, Any] = {"decode": None, "ping_interval": None, "queue_size": 10_000}
    async with open_test_server() as server, open_managed_websocket(server.url, **options) as ws:
        session = ws._session
        assert session is not None
        session.primary.conn._stream = LoopbackEcho()  # the test server's socket sits idle
        messages = aiter(ws)
        prefix = ECHO_TEXT[:8]

        def match(message: Any) -> bool:
            return isinstance(message, str) and message.startswith(prefix)

        async def echo() -> None:
            await ws.send(ECHO_TEXT)
            await anext(messages)

        async def ask() -> None:
            await ws.request(ECHO_TEXT, match=match)

        clients = {"managed send + receive": echo, "managed request()": ask}
        for name, body in clients.items():
            results[name] = await timed_async(body)
        if profile is not None:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(N):
                await clients[profile]()
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return results


def main() -> None:
    import trio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", metavar="CLIENT", help="e.g. 'managed send + receive'")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="trio")
    args = parser.parse_args()
    if args.profile:
        if args.backend == "asyncio":
            asyncio.run(round_trips(args.profile))
        else:
            trio.run(round_trips, args.profile)
        return
    on_asyncio = asyncio.run(pieces())
    on_trio = trio.run(pieces)
    print("| piece | asyncio ns | trio ns |")
    print("|---|---:|---:|")
    for name, value in on_asyncio.items():
        print(f"| {name} | {value:.0f} | {on_trio[name]:.0f} |")
    trips_asyncio = asyncio.run(round_trips())
    trips_trio = trio.run(round_trips)
    print()
    print("| whole round trip on a loopback stream | asyncio ns | trio ns |")
    print("|---|---:|---:|")
    for name, value in trips_asyncio.items():
        print(f"| {name} | {value:.0f} | {trips_trio[name]:.0f} |")


if __name__ == "__main__":
    main()
