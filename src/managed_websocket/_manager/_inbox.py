"""The consumer's message queue: batches through an anyio memory object stream, counted in messages.

One socket read can complete hundreds of messages; handing each over separately would cost a
stream hop per message (several microseconds, more than parsing). So the receive loop puts whole
batches into the stream and consumers take messages from a local deque, awaiting only when it is
empty. ``queue_size`` and the overflow policies still count *messages*:

- ``block``: the receive loop waits (so TCP backpressure reaches the server) until consumers have
  taken the queue down to half of ``queue_size``.
- ``drop_newest``: what does not fit is dropped.
- ``drop_oldest``: everything is queued, then the producer takes the oldest messages over the
  limit off the head (pulling batches from the stream into the local deque to reach them).
- ``error``: like ``drop_newest``, and consumers get one :class:`WebSocketQueueFullError` at the
  point in the sequence where messages went missing.

A batch that finds the inbox empty skips the stream: it becomes the consumers' current batch
(``_current``) at once, which is what taking it out of the stream would do next.

Consumers take batches from the stream only with ``receive_nowait()``, in the order they were
sent, and wait for an *arrival* event when it is empty. (Waiting in the stream's ``receive()``
would let the stream hand a batch straight to the waiting task, out of reach of ``drop_oldest``
and ``close()``, which move batches out of the stream into the local deque; anyio also skips a
waiter with a pending cancellation and buffers the batch instead. Either put batches out of
order.)

A consumer that finds the inbox empty asks the live session (the :class:`Puller`) to ``pull``: it
reads the socket in the consumer's task and puts what it read in here like the receive loop would,
then takes it. Whatever else is queued meanwhile (by the receive loop, a rotation's switch, or
``close``) calls ``stop_pull``, so a consumer never waits on the socket while messages wait here.

An inbox lives from start (or ``connect()`` after ``close()``) to the next close: closing it lets
consumers drain what is queued, then ends their iteration (or raises the manager's fatal error).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Protocol

import anyio
from anyio.lowlevel import checkpoint_if_cancelled
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._exceptions import WebSocketQueueFullError
from .._settings import Overflow

__all__ = ["CANCEL_CHECK_EVERY", "Inbox", "InboxClosed", "Puller"]

CANCEL_CHECK_EVERY = 32


class InboxClosed(Exception):
    """The inbox was closed without an error and every message was taken."""


class Puller(Protocol):
    """What reads the socket for a consumer that found the inbox empty (the live session)."""

    async def pull(self) -> bool:
        """Read once and queue what came; False if that is not possible now (then wait for
        what others queue)."""

    def stop_pull(self) -> None:
        """Something was queued: a consumer waiting on the socket in :meth:`pull` returns."""


class _Overflowed:
    __slots__ = ("error",)

    def __init__(self, error: WebSocketQueueFullError) -> None:
        self.error = error


class Inbox:
    __slots__ = (
        "_arrival",
        "_blocked",
        "_closed",
        "_current",
        "_end_error",
        "_gap",
        "_limit",
        "_local_batches",
        "_overflow",
        "_position",
        "_pulling",
        "_queued",
        "_receive_end",
        "_send_end",
        "_space",
        "_streamed",
        "_unchecked",
        "dropped",
        "puller",
    )

    def __init__(self, queue_size: int, overflow: Overflow) -> None:
        # The stream and the local deque are made on first use (see _streams): an inbox that
        # nothing has reached yet (an idle connection with no consumer) costs a few slots.
        self._send_end: MemoryObjectSendStream[list[Any] | _Overflowed] | None = None
        self._receive_end: MemoryObjectReceiveStream[list[Any] | _Overflowed] | None = None
        self._local_batches: deque[list[Any] | _Overflowed] | None = None
        self._limit = queue_size if queue_size > 0 else math.inf
        self._overflow = overflow
        self._current: list[Any] = []
        self._position = 0
        self._queued = 0  # messages queued and not skipped (in the stream or in _local)
        self._space: anyio.Event | None = None  # exists while the producer waits for room
        self._arrival: anyio.Event | None = None  # exists while consumers wait for a batch
        self._blocked = False
        self._end_error: BaseException | None = None
        self._closed = False
        self._unchecked = 0  # messages handed out since the last cancellation check
        self._gap: _Overflowed | None = None  # the last overflow marker, while nothing follows it
        self.dropped: int = 0
        # Set by the live session: reads the socket in the consumer's task (Session.pull).
        self.puller: Puller | None = None
        self._pulling = 0  # consumers inside puller.pull()
        self._streamed = 0  # batches (and markers) in the stream, not yet taken

    def __del__(self) -> None:
        # An inbox nobody closed (a manager that never ran) takes its streams with it; they hold
        # no OS resource, so closing them here only spares anyio's unclosed-stream warning.
        if self._send_end is not None:
            self._send_end.close()
        if self._receive_end is not None:
            self._receive_end.close()

    # Made on first use: a memory object stream costs ~1.5 KiB, a deque ~760 bytes.

    def _streams(
        self,
    ) -> tuple[
        MemoryObjectSendStream[list[Any] | _Overflowed],
        MemoryObjectReceiveStream[list[Any] | _Overflowed],
    ]:
        if self._send_end is None or self._receive_end is None:
            self._send_end, self._receive_end = anyio.create_memory_object_stream[
                list[Any] | _Overflowed
            ](math.inf)
        return self._send_end, self._receive_end

    @property
    def _send(self) -> MemoryObjectSendStream[list[Any] | _Overflowed]:
        return self._streams()[0]

    @property
    def _receive(self) -> MemoryObjectReceiveStream[list[Any] | _Overflowed]:
        return self._streams()[1]

    @property
    def _local(self) -> deque[list[Any] | _Overflowed]:
        local = self._local_batches
        if local is None:
            local = self._local_batches = deque()
        return local

    @property
    def queued(self) -> int:
        return self._queued

    def has_room(self, count: int) -> bool:
        """Whether ``count`` more messages fit within ``queue_size`` (always, if unbounded)."""
        return count <= self._limit - self._queued

    @property
    def blocked(self) -> bool:
        """True while the producer waits for consumers (``overflow="block"``, queue full)."""
        return self._blocked

    @property
    def closed(self) -> bool:
        return self._closed

    # Producer side (the receive loop)

    async def put_batch(self, batch: list[Any]) -> int:
        """Queue ``batch`` according to the overflow policy; return how many messages were dropped.
        With ``block``, wait for room first."""
        if self._overflow == "block" and len(batch) > self._limit - self._queued:
            await self._put_blocking(batch)
            return 0
        return self.put_nowait(batch)

    def put_nowait(self, batch: list[Any]) -> int:
        """Like :meth:`put_batch`, but ``block`` queues the whole batch at once: for while a
        consumer reads the socket itself (``pull``), as it must not wait for room only it can
        make. A closed inbox still takes what was read before it closed: consumers drain it."""
        room = self._limit - self._queued
        if len(batch) <= room or self._overflow == "block":
            self._push(batch)
            return 0
        if self._overflow == "drop_oldest":
            self._push(batch)
            excess = self._queued - int(self._limit)
            self._drop_oldest(excess)
            return excess
        kept = max(int(room), 0)
        dropped = len(batch) - kept
        if kept:
            self._push(batch[:kept])
        self.dropped += dropped
        if self._overflow == "error":
            self._mark_gap(dropped)
        return dropped

    def _mark_gap(self, dropped: int) -> None:
        # One error per gap: drops with no message queued in between (several socket reads of
        # one burst) add up in the marker that no consumer has taken yet.
        gap = self._gap
        if gap is not None:
            gap.error = WebSocketQueueFullError(int(self._limit), gap.error.dropped_count + dropped)
            return
        self._gap = _Overflowed(WebSocketQueueFullError(int(self._limit), dropped))
        self._enqueue(self._gap)

    def _drop_oldest(self, count: int) -> None:
        self._queued -= count
        self.dropped += count
        taken = min(count, len(self._current) - self._position)
        self._position += taken
        count -= taken
        while count:
            if not self._local:
                # Every queued message is in _current, _local or the stream (consumers take
                # from the stream only when they read on): the oldest are reached in order.
                self._local.append(self._take_from_stream())
            head = self._local[0]
            assert isinstance(head, list)  # overflow markers only exist with "error"
            if len(head) <= count:
                self._local.popleft()
                count -= len(head)
            else:
                self._local[0] = head[count:]
                count = 0

    def _push(self, batch: list[Any]) -> None:
        self._gap = None
        self._queued += len(batch)
        if self._position >= len(self._current) and not self._streamed and not self._local_batches:
            # Nothing is queued: the batch becomes the consumers' current one at once (a
            # consumer that read it from the socket itself takes it straight back). A closed
            # inbox too: consumers drain _current before they look for the end.
            self._current, self._position = batch, 0
            self._wake_consumers()
            return
        self._enqueue(batch)

    def _enqueue(self, item: list[Any] | _Overflowed) -> None:
        if self._closed:
            self._local.append(item)  # close() moved the stream's contents there too
        else:
            self._send.send_nowait(item)
            self._streamed += 1
        self._wake_consumers()

    def _wake_consumers(self) -> None:
        arrival = self._arrival
        if arrival is not None:
            self._arrival = None
            arrival.set()
        if self._pulling and self.puller is not None:
            self.puller.stop_pull()  # a consumer waiting on the socket: this is for it

    async def _put_blocking(self, batch: list[Any]) -> None:
        start = 0
        try:
            while start < len(batch) and not self._closed:
                room = int(self._limit - self._queued)
                if room <= 0:
                    self._blocked = True
                    self._space = anyio.Event()
                    try:
                        await self._space.wait()
                    finally:
                        self._blocked = False
                    continue
                self._push(batch[start : start + room])
                start += room
        finally:
            # Closed, or the receive loop was cancelled (its session ended) while it waited:
            # these messages were read, so they are queued over the limit rather than lost.
            if start < len(batch):
                self._push(batch[start:])

    def close(self, error: BaseException | None = None) -> None:
        """No more messages: consumers drain the queue, then end (or raise ``error``).

        Both stream ends are closed here, at once: what is still in the stream moves to the
        local deque, so nothing is lost and no stream is left for the garbage collector.
        """
        if self._closed:
            return
        self._closed = True
        self._end_error = error
        self._local.extend(self._take_from_stream() for _ in range(self._streamed))
        self._send.close()
        self._receive.close()
        if self._space is not None:
            self._space.set()
        self._wake_consumers()

    # Consumer side. ``_current[_position:]`` are the next messages; ``_local`` holds the batches
    # (lists) and overflow markers that follow, in order, then the stream. Nothing between reading
    # the state and changing it awaits, so several consumers can share one inbox.

    async def get(self) -> Any:
        """The next message. Raises InboxClosed, the fatal error, or WebSocketQueueFullError."""
        # Cancellation is checked every CANCEL_CHECK_EVERY messages: the check costs more than
        # handing over a message (~0.5 us), and a consumer that never awaits anything else still
        # gets cancelled within a few dozen messages. An empty queue always awaits.
        self._unchecked += 1
        if self._unchecked >= CANCEL_CHECK_EVERY:
            self._unchecked = 0
            await checkpoint_if_cancelled()
        position = self._position
        current = self._current
        if position < len(current):  # the hot path: no await, no call
            self._position = position + 1
            self._queued -= 1
            if self._blocked:
                self._taken(0)
            return current[position]
        await self._fill()
        message = self._current[self._position]
        self._position += 1
        self._taken(1)
        return message

    async def get_batch(self) -> list[Any]:
        """Every message available now (at least one), up to the next overflow marker."""
        await checkpoint_if_cancelled()
        while True:
            await self._fill()
            rest = self._current[self._position :] if self._position else self._current
            self._position = len(self._current)
            while self._local or self._streamed:
                if not self._local:
                    self._local.append(self._take_from_stream())
                head = self._local[0]
                if not isinstance(head, list):
                    break
                rest = rest + head
                self._local.popleft()
            if rest:
                self._taken(len(rest))
                return rest

    async def _fill(self) -> None:
        """Make ``_current`` hold an unread message, or raise why there will be none."""
        while self._position >= len(self._current):
            if self._local:
                item = self._local.popleft()
                if isinstance(item, _Overflowed):
                    if item is self._gap:
                        self._gap = None
                    raise item.error
                self._current, self._position = item, 0
                continue
            if self._streamed:
                # Not receive(): it yields to the event loop first, even when a batch is there.
                self._local.append(self._take_from_stream())
                continue
            if self._closed:  # close() moved what was left into _local
                if self._end_error is not None:
                    raise self._end_error
                raise InboxClosed
            # Empty: the count is looked at rather than a WouldBlock raised (once per echo).
            if not await self._pull():
                await self._wait_for_arrival()

    async def _wait_for_arrival(self) -> None:
        arrival = self._arrival
        if arrival is None:
            arrival = self._arrival = anyio.Event()
        await arrival.wait()

    async def _pull(self) -> bool:
        puller = self.puller
        if puller is None:
            return False
        self._pulling += 1
        try:
            return await puller.pull()
        finally:
            self._pulling -= 1

    def _take_from_stream(self) -> list[Any] | _Overflowed:
        self._streamed -= 1
        return self._receive.receive_nowait()

    def _taken(self, count: int) -> None:
        self._queued -= count
        if self._blocked and self._queued <= self._limit / 2 and self._space is not None:
            self._space.set()
