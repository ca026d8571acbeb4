"""Lifecycle events: typed, frozen values, and a hub that fans them out to listeners.

``ws.events()`` gives each caller its own bounded buffer, so a slow listener never blocks the
feed: when its buffer is full the event is dropped for that listener and counted
(``EventListener.dropped``). Publishing never awaits.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._models import DisconnectReason

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "ConnectFailed",
    "Connected",
    "Connecting",
    "DisconnectDeferred",
    "Disconnected",
    "EventHub",
    "EventListener",
    "GapDetected",
    "LifecycleEvent",
    "MessagesDropped",
    "ReconnectScheduled",
    "RotationCompleted",
    "RotationFailed",
    "RotationStarted",
    "SubscriptionFailed",
    "SubscriptionsReplayed",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleEvent:
    """Base class of every event; ``at`` is the wall-clock time it happened."""

    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class Connecting(LifecycleEvent):
    """A dial starts: ``attempt`` 0 is a first or requested connection, n > 0 a reconnect."""

    attempt: int
    delay: float  # what was waited before this dial


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectFailed(LifecycleEvent):
    """The dial that :class:`Connecting` announced failed. ``error`` is its message with URLs and
    secrets masked, ``error_type`` the exception's class name (e.g.
    ``"WebSocketConnectionRefusedError"``), ``url`` the masked URL dialled. ``fatal`` when no
    retry follows (a 4xx refusal, a failed certificate check): the manager then fails with it."""

    attempt: int
    error: str
    error_type: str
    url: str
    fatal: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Connected(LifecycleEvent):
    """A connection is open; ``latency`` is how long opening it took (TCP, TLS and upgrade)."""

    subprotocol: str | None
    latency: float | None  # seconds the handshake took (None for a rotation's connection)


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnected(LifecycleEvent):
    """A connection ended. ``close_reason`` keeps only the length of the peer's text;
    ``in_critical_section`` marks a reactive end while a critical section was open."""

    reason: DisconnectReason
    code: int | None
    close_reason: str  # the peer's text, masked: only its length is kept (secrets stay out)
    in_critical_section: bool = False  # a reactive disconnect that hit a critical section


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconnectScheduled(LifecycleEvent):
    """The manager waits ``delay`` seconds before its next dial: the backoff before reconnect
    attempt ``attempt`` (> 0), or a planned pause (``attempt`` 0): ``reconnect_after``,
    ``schedule_reconnect()`` or a delay from ``should_reconnect``. The 1013 floor and a
    ``Retry-After`` are part of the backoff's delay."""

    delay: float
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationStarted(LifecycleEvent):
    """A make-before-break rotation starts. ``reason``: SCHEDULED for the ``max_connection_age``
    timer, USER_REQUESTED for ``await ws.rotate()``."""

    reason: DisconnectReason


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationCompleted(LifecycleEvent):
    """A rotation switched to the new connection; the old one is closed with 1000."""

    overlap_messages: int  # messages the new connection delivered during the overlap
    duplicates_dropped: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationFailed(LifecycleEvent):
    """A rotation was given up (``error`` says why); the current connection stays."""

    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MessagesDropped(LifecycleEvent):
    """The overflow policy dropped ``count`` messages since the last such event (throttled)."""

    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DisconnectDeferred(LifecycleEvent):
    """A proactive disconnect waited for critical sections; ``forced`` when max_defer ran out."""

    reason: DisconnectReason
    waited: float
    forced: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class GapDetected(LifecycleEvent):
    """Sequence numbers ``first_missing``..``last_missing`` (inclusive) never arrived."""

    first_missing: int
    last_missing: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionsReplayed(LifecycleEvent):
    """The subscriptions were sent again on a new connection, ``requests`` messages for
    ``channels`` channels, and (with an acknowledging protocol) every answer came back;
    ``failed`` of them were refused or not acknowledged (one :class:`SubscriptionFailed` each)."""

    channels: int
    requests: int
    failed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionFailed(LifecycleEvent):
    """The server refused these channels (``code``/``reason`` are its answer), or did not
    acknowledge them within ``ack_timeout`` (``code`` None). They are no longer subscribed."""

    channels: tuple[str, ...]
    code: int | str | None
    reason: str


class EventListener:
    """One listener's view: ``async for event in listener``; ``aclose()`` (or ``async with``) to
    stop listening."""

    def __init__(self, hub: EventHub, buffer: int) -> None:
        self._hub = hub
        send, receive = anyio.create_memory_object_stream[LifecycleEvent](
            buffer if buffer > 0 else math.inf
        )
        self._send: MemoryObjectSendStream[LifecycleEvent] = send
        self._receive: MemoryObjectReceiveStream[LifecycleEvent] = receive
        self.dropped: int = 0

    def _offer(self, event: LifecycleEvent) -> None:
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            self.dropped += 1
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    def _end(self) -> None:
        self._send.close()

    def __aiter__(self) -> EventListener:
        return self

    async def __anext__(self) -> LifecycleEvent:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            # Nothing more can come: close our end now. Left to the garbage collector, the
            # stream's own __del__ may run before ours (in a reference cycle the order is
            # arbitrary) and warn that it was never closed (seen once on Python 3.12, trio).
            self._receive.close()
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Stop listening: no more events are buffered, and iteration ends."""
        self._hub._remove(self)
        self._send.close()
        self._receive.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        self._send.close()
        self._receive.close()


class EventHub:
    __slots__ = ("_closed", "_listeners")

    def __init__(self) -> None:
        self._listeners: list[EventListener] = []
        self._closed = False

    def listen(self, buffer: int = 256) -> EventListener:
        listener = EventListener(self, buffer)
        if self._closed:
            listener._end()
        else:
            self._listeners.append(listener)
        return listener

    def publish(self, event: LifecycleEvent) -> None:
        for listener in self._listeners:
            listener._offer(event)

    def close(self) -> None:
        """No more events: every listener's iteration ends after what it has buffered."""
        self._closed = True
        for listener in self._listeners:
            listener._end()
        self._listeners.clear()

    def _remove(self, listener: EventListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
