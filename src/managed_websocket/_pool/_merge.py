"""The merged stream: every shard's batches reach the consumers through one memory object stream.

Each shard has one forwarder task that takes whole batches from its manager (``batches()``) and
sends ``(shard, batch)`` into this stream, which holds at most ``buffer`` batches. A full stream
makes the forwarder wait, so its manager's queue fills and its overflow policy applies: ``block``
stops reading the socket (backpressure reaches every shard's server), the drop policies drop and
count on that shard. Consumers take messages one by one from the current batch, awaiting only
when it is used up, as a manager's own queue does.

At shutdown the forwarders stop waiting for room: what the shards still held is kept in
:attr:`Merge.tail` (in order per shard), and consumers drain the stream, then the tail, then end
(or raise the pool's fatal error).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import anyio
from anyio.lowlevel import checkpoint_if_cancelled
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["CANCEL_CHECK_EVERY", "Item", "Merge", "MergeClosed"]

CANCEL_CHECK_EVERY = 32

#: (shard, batch), or (shard, error) for a WebSocketQueueFullError at that point of the stream.
Item = tuple[int, "list[Any] | BaseException"]


class MergeClosed(Exception):
    """The pool is closed and every message was taken."""


class Merge:
    __slots__ = (
        "_current",
        "_end_error",
        "_position",
        "_receive",
        "_send",
        "_shard",
        "_unchecked",
        "tail",
    )

    def __init__(self, buffer: int) -> None:
        self._send: MemoryObjectSendStream[Item]
        self._receive: MemoryObjectReceiveStream[Item]
        self._send, self._receive = anyio.create_memory_object_stream[Item](buffer)
        self._current: list[Any] = []
        self._position = 0
        self._shard = -1
        self._unchecked = 0
        self._end_error: BaseException | None = None
        self.tail: deque[Item] = deque()  # what shards still held when the pool closed

    def __del__(self) -> None:
        # The receive end is the consumers': nobody closes it, and it holds no OS resource;
        # closing both ends here spares anyio's unclosed-stream warning.
        self._send.close()
        self._receive.close()

    def sender(self) -> MemoryObjectSendStream[Item]:
        """A send end for one forwarder; the stream ends once every one is closed (and
        :meth:`close` was called)."""
        return self._send.clone()

    def close(self, error: BaseException | None = None) -> None:
        """No more forwarders: consumers drain, then end (or raise ``error``)."""
        if self._end_error is None:
            self._end_error = error
        self._send.close()

    # Consumer side

    async def get(self) -> tuple[int, Any]:
        """The next (shard, message)."""
        self._unchecked += 1
        if self._unchecked >= CANCEL_CHECK_EVERY:
            self._unchecked = 0
            await checkpoint_if_cancelled()
        position = self._position
        current = self._current
        if position < len(current):  # the hot path: no await
            self._position = position + 1
            return self._shard, current[position]
        await self._fill()
        self._position += 1
        return self._shard, self._current[self._position - 1]

    async def get_batch(self) -> tuple[int, list[Any]]:
        """The rest of the current batch, or the next one: (shard, messages)."""
        await checkpoint_if_cancelled()
        await self._fill()
        rest = self._current[self._position :] if self._position else self._current
        self._position = len(self._current)
        return self._shard, rest

    async def _fill(self) -> None:
        while self._position >= len(self._current):
            try:
                try:
                    shard, item = self._receive.receive_nowait()
                except anyio.WouldBlock:
                    shard, item = await self._receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                if not self.tail:
                    if self._end_error is not None:
                        raise self._end_error from None
                    raise MergeClosed from None
                shard, item = self.tail.popleft()
            if isinstance(item, BaseException):
                raise item
            self._shard, self._current, self._position = shard, item, 0
