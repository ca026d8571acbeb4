"""The offline demo: the manager against the embedded test server, with faults injected.

The server broadcasts a tick feed with sequence numbers. Every couple of seconds something
happens: a fault hits the connection (drop, 1013 "try again later", half-open silence, a flapping
server), or the demo rotates the connection make-before-break (no tick lost), or it stays quiet
and a ``should_disconnect`` rule closes connections older than a few seconds. The summary shows
how many ticks arrived, and the outage ledger: each interval without a connection, and exactly
which sequence numbers it cost.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from ._ledger import Outage
from ._manager import ManagedWebSocket
from ._models import DisconnectReason, WebSocketStats
from .testing import WebSocketTestServer, open_test_server

__all__ = ["ledger_table", "plural", "run_demo", "summary"]

TICK_INTERVAL = 0.01  # 100 ticks per second
STEP_INTERVAL = 2.0
MAX_AGE = 3.0  # the should_disconnect rule: reconnect connections older than this
SAMPLE_LIMIT = 120  # characters of the sample message shown

#: One line for the ledger's "covered" rows.
COVERED = (
    "covered: a make-before-break rotation; the new connection delivered before the old one "
    "closed, so nothing was lost"
)


def plural(count: int, noun: str) -> str:
    """``1 tick``, ``2 ticks``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class _Feed:
    """What the consumer saw: sequence numbers and the gaps between them."""

    def __init__(self) -> None:
        self.ticks = 0
        self.last_seq: int | None = None
        self.gaps = 0
        self.missing = 0
        self.sample: Any = None  # the first tick, shown at the end

    def see(self, message: object) -> None:
        if not isinstance(message, dict) or "seq" not in message:
            return
        if self.sample is None:
            self.sample = message
        seq = int(message["seq"])
        self.ticks += 1
        if self.last_seq is not None and seq > self.last_seq + 1:
            self.gaps += 1
            self.missing += seq - self.last_seq - 1
        self.last_seq = seq


async def _tick(server: WebSocketTestServer) -> None:
    seq = 0
    while True:
        seq += 1
        await server.broadcast(json.dumps({"type": "tick", "seq": seq, "price": 100 + seq % 7}))
        await anyio.sleep(TICK_INTERVAL)


async def _scenario(
    server: WebSocketTestServer, ws: ManagedWebSocket, say: Callable[[str], None]
) -> None:
    async def drop() -> None:
        await server.drop_clients()

    async def try_later() -> None:
        await server.close_clients(1013, "maintenance")

    async def silence() -> None:
        server.silence_clients()

    async def flap() -> None:
        server.flap(count=2, code=1011)
        await server.drop_clients()

    async def rotate() -> None:
        await ws.rotate()

    async def quiet() -> None:
        pass

    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("fault: server drops the TCP connection (no close frame)", drop),
        ("planned: rotate make-before-break", rotate),
        ("fault: server closes with 1013 'try again later'", try_later),
        (f"quiet: should_disconnect closes connections older than {MAX_AGE:g} s", quiet),
        ("fault: server goes silent (half-open): keepalive must notice", silence),
        ("planned: rotate make-before-break", rotate),
        ("fault: server flaps: accepts, then closes at once, twice", flap),
    ]
    for name, step in steps * 100:
        await anyio.sleep(STEP_INTERVAL)
        say(f"*** {name}")
        await step()


async def run_demo(seconds: float, backend: str) -> int:
    """Run the demo for ``seconds``; print a summary. Returns the exit code."""

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    feed = _Feed()
    reasons: Counter[DisconnectReason] = Counter()
    say(f"managed-websocket demo on {backend}: {seconds:g} s against an embedded tick server")
    say(f"the code it runs: {_source_file()}")
    async with open_test_server(echo=False) as server:
        ws = ManagedWebSocket(
            server.url + "/ticks",
            ping_interval=0.5,
            ping_timeout=0.5,
            close_timeout=1.0,  # a half-open peer never answers our close frame
            reconnect_delay=0.1,
            max_reconnect_delay=1.0,
            server_unavailable_delay=0.5,  # a keyword is not clamped: a short demo floor
            stable_connection_time=1.0,
            max_reconnect_attempts=None,
            disconnect_check_interval=0.5,
            should_disconnect=lambda: ws.connection_duration > MAX_AGE,
            dedup_key=lambda message: message.get("seq"),
            sequence_of=lambda message: message.get("seq"),
            should_reconnect=lambda: True,
            reconnect_check_interval=0.1,
            on_disconnect=lambda reason: reasons.update([reason]),
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(_tick, server)
            async with ws:
                tg.start_soon(_scenario, server, ws, say)
                await ws.subscribe("ticks")
                with anyio.move_on_after(seconds):
                    async for message in ws:
                        feed.see(message)
            tg.cancel_scope.cancel()
    say("--- summary")
    say(summary(ws.stats, dict(reasons)))
    say(
        f"rotations {ws.stats.rotations} ({plural(ws.stats.duplicates_dropped, 'duplicate')} "
        f"dropped), ticks received {feed.ticks}, sequence gaps {feed.gaps} "
        f"({plural(feed.missing, 'tick')} missed while disconnected)"
    )
    if feed.sample is not None:
        say(f"sample message: {_truncate(json.dumps(feed.sample), SAMPLE_LIMIT)}")
    say("outage ledger (ws.outages):")
    for line in ledger_table(ws.outages):
        say("  " + line)
    return 0


def _source_file() -> str:
    """This module's file, relative to the working directory when it is below it."""
    path = Path(__file__).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summary(stats: WebSocketStats, reasons: dict[DisconnectReason, int]) -> str:
    """A human summary of a run's statistics."""
    connects = (
        f"connects {stats.connects}, disconnects {stats.disconnects} "
        f"({stats.proactive_disconnects} proactive, {stats.reactive_disconnects} reactive), "
        f"reconnect attempts {stats.reconnect_attempts}"
    )
    messages = (
        f"messages received {stats.messages_received}, sent {stats.messages_sent}, "
        f"dropped {stats.messages_dropped}"
    )
    lines = [connects, messages]
    if reasons:
        by_reason = ", ".join(f"{reason.name} {count}" for reason, count in reasons.items())
        lines.append(f"disconnects by reason: {by_reason}")
    return "\n".join(lines)


_LEDGER_ROW = "{:<12} {:>10}  {:<25} {:<5} {}"


def ledger_table(outages: tuple[Outage, ...] | list[Outage]) -> list[str]:
    """The outage ledger as text: a header row, one row per outage, and what "covered" means
    when a row is covered. Times are the wall clock (local time)."""
    if not outages:
        return ["no outages"]
    lines = [_LEDGER_ROW.format("started", "duration", "cause", "code", "ticks missed")]
    for outage in outages:
        lines.append(_ledger_row(outage))  # noqa: PERF401 - one row per outage, readable
    if any(outage.covered for outage in outages):
        lines.append(COVERED)
    return lines


def _ledger_row(outage: Outage) -> str:
    started = (
        time.strftime("%H:%M:%S", time.localtime(outage.started_at))
        + f".{int(outage.started_at % 1 * 1000):03d}"
        if outage.started_at is not None
        else f"{outage.start:.3f}"
    )
    duration = f"{outage.duration * 1000:.1f} ms" if outage.duration is not None else "open"
    cause = f"{outage.reason.name} (covered)" if outage.covered else outage.reason.name
    code = "-" if outage.code is None else str(outage.code)  # no close frame: no code
    if outage.first_missing is not None and outage.last_missing is not None:
        count = outage.last_missing - outage.first_missing + 1
        missed = f"{plural(count, 'tick')}: seq {outage.first_missing}..{outage.last_missing}"
    elif outage.covered:
        missed = "none"
    else:
        missed = "none seen"
    return _LEDGER_ROW.format(started, duration, cause, code, missed)
