"""The delivery stress model: seeded random cases that push bursts through every delivery path.

Each case draws a queue size and overflow policy, a burst of ``{"seq": n}`` messages (1 to 10 x
``queue_size``) written in one write or split at random byte offsets (mid-header included), a
consumer style (``receive``, ``async for``, ``batches()``, ``on_message``) with pauses, keepalive
settings, and a fault that strikes during the burst (close, drop, reset, a half-open peer,
``rotate()`` with and without ``dedup_key``), and in some cases server pings (``{"ping": n}``) in
the burst, answered by ``ping_reply`` (which makes ``block`` read ahead), and in some cases answers
(``{"answer": n}``) in the burst to ``ws.request()`` calls waiting since before it began. After the burst the server sends end markers (later
seqs) on whatever connection is live until the consumer sees one. Then every invariant of
docs/concepts.md ("Delivery guarantees") is checked:

- conservation: messages received = delivered + dropped + still queued (+ what a rotation
  deduplicated or superseded, + the pings consumed);
- every ping that was read is answered once, and each connection's answers are in order;
- each request() returns its own answer, or raises (its connection ended first); an answer
  goes either to its request or, once that has stopped waiting, to the consumer: never both;
- under ``block`` nothing is dropped, and without a fault that loses a connection's unread
  bytes, every seq of the burst arrives;
- order is kept and nothing is repeated (a rotation without ``dedup_key`` may repeat at most its
  overlap, as documented);
- every timed wait (``receive(timeout)``, iteration under ``move_on_after``,
  ``wait_connected(timeout)``) returns within its timeout plus slack, and ``close()``, ``kill()``,
  ``shutdown()`` and leaving ``async with`` take at most ``close_timeout`` plus slack, whatever
  the reader is doing (a full queue nobody reads included).

CI runs the fixed seeds below on both backends (about a minute each). ``STRESS=N`` adds N cases
with fresh random seeds, printed on failure, for a longer hunt; ``STRESS_SEED=S`` replays one.
"""

from __future__ import annotations

import itertools
import json
import os
import random
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
import pytest

from managed_websocket import (
    ManagedWebSocket,
    PingReply,
    WebSocketClosedError,
    WebSocketQueueFullError,
    WebSocketStats,
    WebSocketTimeoutError,
)
from managed_websocket.testing import ClientRecord, WebSocketTestServer, open_test_server

from ._harness import server_frame

pytestmark = pytest.mark.anyio

QUEUE_SIZES = (1, 2, 5, 10, 1000)  # 1000 is the default
OVERFLOWS = ("block", "drop_oldest", "drop_newest", "error")
CONSUMERS = ("receive", "iterate", "batches", "on_message")
FAULTS = (None, "close", "drop", "reset", "half_open", "rotate", "rotate_dedup")
ENDINGS = ("exit", "close", "kill", "shutdown")  # how the case ends, before leaving async with
MAX_BURST = 3000

WAIT_TIMEOUT = 0.25  # each timed wait of the consumer
SLACK = 0.5  # what a timed wait may overrun by (scheduling on a loaded 2-core machine)
CLOSE_TIMEOUT = 0.5
CASE_LIMIT = 30.0  # a case that has not finished by then hangs: it fails with its seed

CI_SEEDS = range(1, 29)


@dataclass(frozen=True)
class Case:
    seed: int
    queue_size: int
    overflow: str
    burst: int
    cuts: tuple[int, ...]  # byte offsets at which the burst's bytes are split into writes
    consumer: str
    start_delay: float  # the consumer starts this long after the burst began
    pause_every: int  # the consumer pauses after every n messages (0: never)
    pause: float
    keepalive: tuple[float, float] | None  # (ping_interval, ping_timeout)
    fault: str | None
    fault_after: int  # the fault strikes after this many writes of the burst
    leave_early: bool  # the consumer stops reading before the close (a full queue at close)
    ending: str
    pings_every: int = 0  # a server ping after every n messages of the burst (0: none)
    answers_every: int = 0  # an answer to a request() after every n messages (0: none)


def draw(seed: int) -> Case:
    rng = random.Random(seed)
    queue_size = rng.choice(QUEUE_SIZES)
    burst = rng.randint(1, min(10 * queue_size, MAX_BURST))
    size = sum(len(frame(n)) for n in range(burst))
    cuts = tuple(sorted(rng.sample(range(1, size), min(size - 1, rng.choice((0, 0, 1, 3, 8))))))
    fault = rng.choice(FAULTS)
    keepalive = rng.choice((None, (0.05, 0.3), (0.2, 0.5)))
    if fault == "half_open" and keepalive is None:
        keepalive = (0.05, 0.3)  # only the keepalive notices a half-open peer
    return Case(
        seed=seed,
        queue_size=queue_size,
        overflow=rng.choice(OVERFLOWS),
        burst=burst,
        cuts=cuts,
        consumer=rng.choice(CONSUMERS),
        start_delay=rng.choice((0.0, 0.0, 0.05, 0.3)),
        pause_every=max(rng.choice((0, 0, 1, 7, 100)), burst // 50),  # about 50 pauses at most
        pause=rng.choice((0.0, 0.001, 0.01)),
        keepalive=keepalive,
        fault=fault,
        fault_after=rng.randint(0, len(cuts) + 1),  # the last: after the whole burst
        leave_early=rng.random() < 0.2,
        ending=rng.choice(ENDINGS),
        pings_every=rng.choice((0, 0, 1, 10, 50)),  # drawn last: older seeds keep their cases
        answers_every=rng.choice((0, 0, 5, 50)),  # after it, for the same reason
    )


def frame(seq: int) -> bytes:
    return server_frame(json.dumps({"seq": seq}))


def burst_bytes(case: Case) -> bytes:
    every = case.pings_every
    answered = answered_in(case)
    return b"".join(
        frame(n)
        + (server_frame(json.dumps({"ping": n})) if every and n % every == every - 1 else b"")
        + (server_frame(json.dumps({"answer": n})) if n in answered else b"")
        for n in range(case.burst)
    )


def answered_in(case: Case) -> set[int]:
    """The requests whose answers the burst carries (each after message n of the same n)."""
    every = case.answers_every
    return {n for n in range(case.burst) if every and n % every == every - 1}


def is_ping(message: Any) -> bool:
    return isinstance(message, dict) and "ping" in message


def split(data: bytes, cuts: tuple[int, ...]) -> list[bytes]:
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


class Run:
    """One case against a live manager: the consumer, what it saw, and the bounds it kept."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.seqs: list[int] = []  # what the consumer was handed (by on_message, for that style)
        self.drained: list[int] = []  # for on_message: what the queue handed out beside it
        self.overflow_errors = 0
        self.overruns: list[float] = []  # timed waits that outlived their timeout by > SLACK
        self.saw_end = anyio.Event()
        self.rotated: anyio.Event | None = None  # set once a rotation ended (either way)
        self.pongs: list[list[int]] = []  # the answers each connection got, in order
        self.returned: dict[int, Any] = {}  # request n → what request() returned
        self.failed: set[int] = set()  # requests whose connection ended first
        self.answers_delivered: list[int] = []  # answers handed to the consumer (too late)

    def manager(self, server: WebSocketTestServer) -> ManagedWebSocket:
        case = self.case
        options: dict[str, Any] = {
            "queue_size": case.queue_size,
            "overflow": case.overflow,
            "ping_interval": case.keepalive[0] if case.keepalive else None,
            "ping_timeout": case.keepalive[1] if case.keepalive else 10.0,
            "reconnect_delay": 0.01,
            "reconnect_jitter": 0.0,
            "max_reconnect_attempts": None,
            "connection_timeout": 5.0,
            "close_timeout": CLOSE_TIMEOUT,
            "rotation_timeout": 2.0,
        }
        if case.fault == "rotate_dedup":
            options["dedup_key"] = key_of
        if case.consumer == "on_message":
            options["on_message"] = self.on_message
        if case.pings_every:
            options["ping_reply"] = PingReply(is_ping, lambda m: {"pong": m["ping"]})
        return ManagedWebSocket(server.url + "/ws", **options)

    async def on_message(self, message: Any) -> None:
        if "answer" not in message:  # a late answer: counted once, as the queue hands it out
            await self.took(self.seqs, [message])

    async def ask(self, ws: ManagedWebSocket, n: int) -> None:
        """request() n, waiting from before the burst until its answer (or the end)."""

        def match(message: Any) -> bool:
            return isinstance(message, dict) and message.get("answer") == n

        try:
            self.returned[n] = await ws.request({"ask": n}, match=match, timeout=CASE_LIMIT)
        except WebSocketClosedError:
            self.failed.add(n)

    async def took(self, into: list[int], messages: list[Any]) -> None:
        """Record what the consumer was handed, all of it at once (a cancelled pause must not
        lose the rest of a batch), then pause if it crossed a multiple of ``pause_every``."""
        seqs = []
        for message in messages:
            if "answer" in message:
                self.answers_delivered.append(message["answer"])
            else:
                seqs.append(seq_of(message))
        before = len(into)
        into.extend(seqs)
        if seqs and seqs[-1] >= self.case.burst:
            self.saw_end.set()
        every = self.case.pause_every
        if every and len(into) // every > before // every:
            await anyio.sleep(self.case.pause)

    async def consume(self, ws: ManagedWebSocket) -> None:
        await anyio.sleep(self.case.start_delay)
        style = self.case.consumer
        into = self.drained if style == "on_message" else self.seqs
        while not (self.case.leave_early and self.saw_end.is_set()):
            if style == "receive":
                await self.timed(self.receive_one(ws, into))
            else:
                iterator = ws.batches() if style in ("batches", "on_message") else ws.stream()
                await self.iterate(iterator, into)

    async def watch_state(self, ws: ManagedWebSocket) -> None:
        """``wait_connected(timeout)`` keeps its bound through every fault."""
        while not self.saw_end.is_set():
            await self.timed(ws.wait_connected(WAIT_TIMEOUT))
            await anyio.sleep(0.01)

    async def receive_one(self, ws: ManagedWebSocket, into: list[int]) -> None:
        try:
            await self.took(into, [await ws.receive(timeout=WAIT_TIMEOUT)])
        except WebSocketTimeoutError:
            pass
        except WebSocketQueueFullError:
            self.overflow_errors += 1

    async def iterate(self, iterator: Any, into: list[int]) -> None:
        """Take from ``iterator``, each step bounded by ``move_on_after``; return after an
        overflow error (it ends that iteration) or once the consumer may leave."""
        while not (self.case.leave_early and self.saw_end.is_set()):
            with anyio.move_on_after(WAIT_TIMEOUT):
                started = anyio.current_time()
                try:
                    item = await iterator.__anext__()
                except WebSocketQueueFullError:
                    self.overflow_errors += 1
                    return
                finally:
                    self.check_bound(started, WAIT_TIMEOUT)
                await self.took(into, item if isinstance(item, list) else [item])

    async def timed(self, step: Any) -> None:
        started = anyio.current_time()
        await step
        self.check_bound(started, WAIT_TIMEOUT)

    def check_bound(self, started: float, timeout: float) -> None:
        took = anyio.current_time() - started
        if took > timeout + SLACK:
            self.overruns.append(took)

    async def feed(self, server: WebSocketTestServer, ws: ManagedWebSocket) -> None:
        """Write the burst to the first connection, with the fault after ``fault_after`` writes;
        then send end markers to every live connection until the consumer has seen one."""
        case = self.case
        first = server.clients[0]
        chunks = split(burst_bytes(case), case.cuts)
        at = case.fault_after if case.fault is not None else len(chunks)
        async with anyio.create_task_group() as tg:
            await self.write(server, first, chunks[:at], 0)
            if case.fault is not None:
                await self.strike(server, ws, first, tg)
            await self.write(server, first, chunks[at:], at)
            marker = case.burst
            # A rotation's new connection warms up on these markers: go on until it is done.
            while not self.saw_end.is_set() or (self.rotated and not self.rotated.is_set()):
                await server.broadcast(json.dumps({"seq": marker}))
                marker += 1
                with anyio.move_on_after(0.05):
                    await self.saw_end.wait()
                await anyio.sleep(0.01)  # seen: more only while a rotation still needs them

    async def write(
        self, server: WebSocketTestServer, client: ClientRecord, chunks: list[bytes], first: int
    ) -> None:
        """Write the chunks with nothing in between: a pong written between two chunks that
        split a frame would corrupt the stream (a 1007 that lost the rest of the burst, seen
        with a keepalive). A fault, though, may cut a frame: it strikes between the runs."""
        async with server.raw_writer(client) as write:
            for index, chunk in enumerate(chunks, start=first):
                await write(chunk)
                await anyio.sleep(random.Random(self.case.seed + index).choice((0, 0, 0.001)))

    async def strike(
        self,
        server: WebSocketTestServer,
        ws: ManagedWebSocket,
        first: ClientRecord,
        tg: anyio.abc.TaskGroup,
    ) -> None:
        fault = self.case.fault
        if fault == "close":
            await server.close_clients(1000, client=first)
        elif fault == "drop":
            await server.drop_clients(first)
        elif fault == "reset":
            await server.reset_clients(first)
        elif fault == "half_open":
            server.silence_clients(first)
        else:  # a rotation runs beside the rest of the burst and the end markers
            self.rotated = anyio.Event()
            tg.start_soon(self.rotate, ws, self.rotated)

    async def rotate(self, ws: ManagedWebSocket, done: anyio.Event) -> None:
        try:
            await ws.rotate()
        finally:
            done.set()


def seq_of(message: Any) -> int:
    return int(message["seq"])


def key_of(message: Any) -> Any:
    """dedup_key: the seq, or the answer's own key (answers are never duplicated)."""
    return ("answer", message["answer"]) if "answer" in message else message["seq"]


async def run_case(case: Case) -> None:
    run = Run(case)
    async with open_test_server(echo=False) as server:
        ws = run.manager(server)
        with anyio.fail_after(CASE_LIMIT):
            async with ws:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(run.consume, ws)
                    tg.start_soon(run.watch_state, ws)
                    await server.wait_for_handshakes(1)
                    asked = sorted(answered_in(case))
                    for n in asked:
                        tg.start_soon(run.ask, ws, n)
                    # Every request waits (its matcher is registered) before the burst begins.
                    while len(ws._requests._expected) < len(asked):  # noqa: ASYNC110 - test
                        await anyio.sleep(0.001)
                    await run.feed(server, ws)
                    await run.saw_end.wait()
                    if case.leave_early:
                        await anyio.sleep(0.05)  # more markers may queue up, unread
                    tg.cancel_scope.cancel()
                started = anyio.current_time()
                if case.ending != "exit":
                    await getattr(ws, case.ending)()
            close_took = anyio.current_time() - started  # the ending, then leaving async with
            # Everything still queued is handed out after the close, then the queue ends.
            await drain(ws, run)
        run.pongs = [
            [json.loads(m)["pong"] for m in client.messages if "pong" in str(m)]
            for client in server.clients
        ]
    check(case, run, ws, close_took)


async def drain(ws: ManagedWebSocket, run: Run) -> None:
    """After the close: take what is still queued; the queue then ends."""
    drained = run.drained if run.case.consumer == "on_message" else run.seqs
    while True:
        try:
            async for batch in ws.batches():
                for message in batch:
                    if "answer" in message:
                        run.answers_delivered.append(message["answer"])
                    else:
                        drained.append(seq_of(message))
        except WebSocketQueueFullError:  # noqa: PERF203 - it ends an iteration: take the rest
            run.overflow_errors += 1
        else:
            return


def check(case: Case, run: Run, ws: ManagedWebSocket, close_took: float) -> None:
    stats = ws.stats
    seqs = run.seqs
    accounted = (
        stats.messages_dropped
        + stats.duplicates_dropped
        + stats.messages_superseded
        + stats.messages_consumed
        + len(run.answers_delivered)  # answers too late for their request: data
    )
    if case.consumer == "on_message":
        # Every message is queued after on_message saw it (or, when the session ended while
        # on_message ran, queued without it): the queue hands out or drops each of them.
        assert stats.messages_received == len(run.drained) + accounted, "conservation"
        check_order(case, stats, run.drained)
    else:
        assert stats.messages_received == len(seqs) + accounted, "conservation"
    check_order(case, stats, seqs)
    if case.overflow == "block":
        assert stats.messages_dropped == 0
        assert run.overflow_errors == 0
        if case.fault in (None, "rotate_dedup"):
            assert set(range(case.burst)) <= set(seqs), "lost under block"
    else:
        assert (run.overflow_errors > 0) <= (case.overflow == "error")
    pongs = [n for answers in run.pongs for n in answers]
    assert len(pongs) == len(set(pongs)) <= stats.messages_consumed, "each ping answered once"
    for answers in run.pongs:
        assert answers == sorted(answers), "answers in the order of the pings"
    if not case.pings_every:
        assert stats.messages_consumed == len(run.returned)
    # Each request got its own answer or raised; an answer went to its request or was
    # delivered (after the request had stopped waiting), never both, never twice.
    assert all(answer == {"answer": n} for n, answer in run.returned.items()), "own answer"
    assert not set(run.returned) & run.failed
    assert not set(run.returned) & set(run.answers_delivered), "an answer twice"
    assert len(run.answers_delivered) == len(set(run.answers_delivered))
    assert set(run.returned) | set(run.answers_delivered) <= answered_in(case)
    if case.fault is None and case.overflow == "block":
        assert set(run.returned) == answered_in(case), "every request answered"
    assert not ws._requests.waiting, "a matcher outlived its request"
    assert run.overruns == [], "timed waits overran their timeout"
    assert close_took <= CLOSE_TIMEOUT + SLACK + 0.5, "close took too long"


def check_order(case: Case, stats: WebSocketStats, seqs: list[int]) -> None:
    if case.fault == "rotate":
        # Without dedup_key the staged overlap may repeat what the old connection delivered.
        assert len(seqs) - len(set(seqs)) <= stats.overlap_messages
        assert list(dict.fromkeys(seqs)) == sorted(set(seqs)), "order"
    else:
        assert seqs == sorted(set(seqs)), "order, no duplicates"


def stress_seeds() -> list[int]:
    if "STRESS_SEED" in os.environ:
        return [int(os.environ["STRESS_SEED"])]
    extra = int(os.environ.get("STRESS", "0"))
    fresh = random.Random().sample(range(10**6, 10**9), extra)
    return [*CI_SEEDS, *fresh]


@pytest.mark.parametrize("seed", stress_seeds())
async def test_delivery_model(seed: int) -> None:
    case = draw(seed)
    print(case)  # shown with a failure; draw(seed) makes the same case again
    await run_case(case)
