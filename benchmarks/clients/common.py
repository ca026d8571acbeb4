"""What every benchmark client shares: the plans, the results and the measuring loops.

Every client measures with the same loops, fed with its library's own receive call (the call its
``async for`` would make), so the loops cost every library the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sized
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from time import perf_counter, perf_counter_ns
from typing import Any, Protocol, TypeVar

import anyio

# Connection settings every peer gets, where it has the knob (see the report's method section).
MAX_MESSAGE_SIZE = 16 * 1024 * 1024
QUEUE_SIZE = 10_000
READ_SIZE = 262_144  # managed_websocket's socket read size, given to peers that expose one
CLOSE_TIMEOUT = 2.0
#: How long a client may take to close after measuring before it is cancelled (and noted).
CLOSE_GRACE = CLOSE_TIMEOUT + 1.0


@dataclass(frozen=True)
class StreamPlan:
    """Receive ``warmup`` messages, then count messages for ``seconds``.

    The clock is read every ``check_every`` messages (or every batch / socket read)."""

    warmup: int
    seconds: float
    check_every: int


@dataclass(frozen=True)
class EchoPlan:
    warmup: int
    rounds: int


@dataclass
class Count:
    """Messages counted in ``seconds``; raw floors count ``wire_bytes`` instead."""

    messages: int
    seconds: float
    sample: Any = None  # the last message, to check that the client really decoded messages
    wire_bytes: int = 0
    note: str = ""


@dataclass
class Echo:
    round_trips_ns: list[int] = field(default_factory=list)
    sample: Any = None
    note: str = ""


class Client(Protocol):
    async def stream(self, url: str, plan: StreamPlan) -> Count: ...

    async def echo(self, url: str, plan: EchoPlan) -> Echo: ...


Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[Any]]
Conn = TypeVar("Conn")
Result = TypeVar("Result", Count, Echo)


async def with_bounded_close(
    connect: Callable[[], AbstractAsyncContextManager[Conn]],
    measure: Callable[[Conn], Awaitable[Result]],
) -> Result:
    """Open a connection, measure, then close it within CLOSE_GRACE (else cancel and note it)."""
    result: Result | None = None
    with anyio.CancelScope() as scope:
        async with connect() as conn:
            result = await measure(conn)
            scope.deadline = anyio.current_time() + CLOSE_GRACE
    if result is None:
        raise TimeoutError("cancelled before the measurement ended")
    if scope.cancelled_caught:
        result.note = f"close did not finish in {CLOSE_GRACE:g} s after measuring; cancelled"
    return result


async def count_each(receive: Receive, plan: StreamPlan) -> Count:
    """Count messages returned one by one by ``receive``."""
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
            return Count(count, now - start, last)


async def count_batches(receive_batch: Callable[[], Awaitable[Sized]], plan: StreamPlan) -> Count:
    """Count messages returned in lists by ``receive_batch``."""
    batch: Any = []
    seen = 0
    while seen < plan.warmup:
        batch = await receive_batch()
        seen += len(batch)
    count = 0
    start = perf_counter()
    deadline = start + plan.seconds
    while True:
        batch = await receive_batch()
        count += len(batch)
        now = perf_counter()
        if now >= deadline:
            return Count(count, now - start, batch[-1])


async def echo_rounds(send: Send, receive: Receive, message: Any, plan: EchoPlan) -> Echo:
    """Send ``message`` and await the reply, ``plan.rounds`` times in a row after a warm-up."""
    for _ in range(plan.warmup):
        await send(message)
        await receive()
    result = Echo()
    times = result.round_trips_ns
    for _ in range(plan.rounds):
        start = perf_counter_ns()
        await send(message)
        result.sample = await receive()
        times.append(perf_counter_ns() - start)
    return result


class CallbackCounter:
    """``count_each`` for callback libraries: call :meth:`add` per message; True means done."""

    def __init__(self, plan: StreamPlan) -> None:
        self.plan = plan
        self.seen = 0
        self.start = 0.0
        self.deadline = 0.0
        self.result: Count | None = None

    def add(self, message: Any) -> bool:
        self.seen += 1
        counted = self.seen - self.plan.warmup
        if counted == 0:
            self.start = perf_counter()
            self.deadline = self.start + self.plan.seconds
        elif counted > 0 and counted % self.plan.check_every == 0:
            now = perf_counter()
            if now >= self.deadline:
                self.result = Count(counted, now - self.start, message)
                return True
        return False


class CallbackEcho:
    """``echo_rounds`` for callback libraries: :meth:`reply` per reply; True means done."""

    def __init__(self, plan: EchoPlan) -> None:
        self.plan = plan
        self.replies = 0
        self.sent_at = 0
        self.result = Echo()

    def sending(self) -> None:
        self.sent_at = perf_counter_ns()

    def reply(self, message: Any) -> bool:
        now = perf_counter_ns()
        self.replies += 1
        if self.replies > self.plan.warmup:
            self.result.round_trips_ns.append(now - self.sent_at)
            self.result.sample = message
        return self.replies >= self.plan.warmup + self.plan.rounds
