"""A serving period: the live connection and the tasks that serve it, in one cancel scope.

A session runs, in its own task group, one *link* per connection (its receive loop, which also
keeps it alive: it pings between its reads, :class:`_Keepalive`), the ``should_disconnect``
checks and the ``max_connection_age`` timer. The task that runs the session (the manager's own)
runs the first primary's receive loop itself, so an idle default connection has one task; with
``on_message`` the loop gets a task of its own, so user code never runs in the manager's task.
Normally there is one link. During a make-before-break rotation there are two: the primary keeps
delivering while the candidate stages what it receives; :meth:`Session.switch_to` retires the
primary and makes the candidate live, splicing its staged messages in without duplicates.

A consumer that finds the inbox empty reads the primary connection itself (:meth:`Session.pull`):
no hand-over from the receive loop's task to its own. The primary's receive loop gives way while
consumers pull, and reads again once none has for ``PULL_GRACE``.

Whoever decides the session is over — a loop, or a public operation such as ``close()`` — calls
:meth:`Session.end` with a :class:`DisconnectEvent`: the first event wins and the scope is
cancelled, so nothing of this session can outlive it. :meth:`Session.run` then closes the sockets
(the primary gracefully for a proactive end, at once otherwise), shielded, and returns the event.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from .._backoff import backoff_delay
from .._connection import WebSocketConnection
from .._events import DisconnectDeferred, EventHub, GapDetected
from .._exceptions import (
    WebSocketAbnormalClosureError,
    WebSocketClosedError,
    WebSocketError,
    WebSocketProtocolError,
)
from .._ledger import OutageLedger
from .._models import DisconnectEvent, DisconnectReason, WebSocketStats
from .._ratelimit import SendPacer
from .._settings import Settings, effective_send_rate
from .._sync import FastLock
from ._acks import Requests
from ._callbacks import CallbackRunner
from ._control import AppHeartbeat, ControlMessages
from ._critical import CriticalSections
from ._inbox import Inbox
from ._rotation import Deduplicator

__all__ = ["PULL_GRACE", "Link", "Session", "Shared", "event_for_error"]

#: Seconds after a consumer's last pull() before the receive loop reads in the background again.
#: Short enough for pings, close frames and overflow policies not to notice.
PULL_GRACE = 0.005


def event_for_error(error: BaseException) -> DisconnectEvent:
    """Classify why a connection ended from the error its reader saw (SPEC 3)."""
    now = time.time()
    if isinstance(error, WebSocketAbnormalClosureError):
        return DisconnectEvent(DisconnectReason.NETWORK_ERROR, 1006, error=error, at=now)
    if isinstance(error, WebSocketClosedError):
        return DisconnectEvent(
            DisconnectReason.SERVER_CLOSED, error.code, error.reason, error=error, at=now
        )
    if isinstance(error, WebSocketProtocolError):
        return DisconnectEvent(DisconnectReason.PROTOCOL_ERROR, error.code, error=error, at=now)
    return DisconnectEvent(DisconnectReason.NETWORK_ERROR, error=error, at=now)


@dataclass(slots=True)
class Shared:
    """The manager's parts a session uses."""

    settings: Settings
    stats: WebSocketStats
    callbacks: CallbackRunner
    critical: CriticalSections
    events: EventHub
    ledger: OutageLedger
    requests: Requests
    on_dropped: Callable[[int], Awaitable[None]]
    rotate: Callable[[DisconnectReason], Awaitable[bool]]
    logger: logging.Logger
    #: True if a cancellation from outside the manager will be followed by a graceful shutdown
    #: (``async with``: ``__aexit__`` does one); then the session closes gracefully too.
    closes_gracefully_when_cancelled: Callable[[], bool]


class Link:
    """One connection of a session. ``staged`` is a list while it is a rotation candidate.

    Its receive loop runs in a scope of the link's (:meth:`task_scope`), so :meth:`cancel` stops
    it wherever it is: no task group of its own, which would cost a task and a group per
    connection for nothing else.
    """

    __slots__ = (
        "_scopes",
        "_warm",
        "cancelled",
        "conn",
        "failure",
        "heartbeat",
        "held",
        "hot",
        "opened_at",
        "pacer",
        "retired",
        "staged",
        "staged_keys",
    )

    def __init__(
        self, conn: WebSocketConnection, *, staged: bool, send_rate: float | None = None
    ) -> None:
        self.conn = conn
        # send_rate_limit is the venue's per connection: each link has its own pacer.
        self.pacer = None if send_rate is None else SendPacer(send_rate)
        self.heartbeat: AppHeartbeat | None = None  # with Heartbeat: set by its receive loop
        self.held: list[Any] = []  # read ahead while a delivery waited for room
        self._scopes: list[anyio.CancelScope] = []
        self.cancelled = False
        self.staged: list[Any] | None = [] if staged else None
        self._warm: anyio.Event | None = None
        self.hot = False  # a candidate received what makes it warm (is_warm)
        # With dedup_key: the keys of ``staged``. Only candidates stage (a primary made as one
        # never does), so only they get a set.
        self.staged_keys: set[Hashable] | None = set() if staged else None
        self.failure: DisconnectEvent | None = None
        self.retired = False  # replaced by a rotation: its end is not the session's end
        self.opened_at = anyio.current_time()

    @property
    def warm(self) -> anyio.Event:
        """Set when a candidate is ready to take over (or failed). Made on first use: only
        rotation candidates need one."""
        if self._warm is None:
            self._warm = anyio.Event()
        return self._warm

    def task_scope(self) -> anyio.CancelScope:
        """A scope for one of this link's tasks; cancelled by :meth:`cancel`, even later."""
        scope = anyio.CancelScope()
        if self.cancelled:
            scope.cancel()
        self._scopes.append(scope)
        return scope

    def cancel(self) -> None:
        self.cancelled = True
        for scope in self._scopes:
            scope.cancel()


class Session:
    __slots__ = (
        "_candidates",
        "_control",
        "_data_at",
        "_dedup",
        "_delivery_lock",
        "_group",
        "_inbox",
        "_pulling",
        "_pulls",
        "_pulls_seen",
        "_reader_wake",
        "_reads_ahead",
        "_reply_lock",
        "_settings",
        "_shared",
        "ended_at",
        "ended_in_critical",
        "ending",
        "primary",
    )

    def __init__(self, conn: WebSocketConnection, shared: Shared, inbox: Inbox) -> None:
        self._shared = shared
        self._settings = shared.settings
        self._inbox = inbox
        self.primary = Link(conn, staged=False, send_rate=effective_send_rate(self._settings))
        self._control = ControlMessages(shared)
        settings = self._settings
        self._reads_ahead = (
            settings.overflow == "block"
            and settings.queue_size > 0
            and (settings.ping_reply is not None or settings.heartbeat is not None)
        )
        self._candidates: list[Link] = []
        self._dedup: Deduplicator | None = None
        self._delivery_lock = FastLock()
        self._reply_lock = FastLock()
        # A consumer reading the primary connection itself (pull()); how many pulls began, and
        # how many the receive loop had seen when it last looked; _reader_wake: the receive loop
        # waits for the current pull to end.
        self._pulling = False
        self._pulls = 0
        self._pulls_seen = 0
        self._reader_wake: anyio.Event | None = None
        self._group: anyio.abc.TaskGroup | None = None
        self._data_at = 0.0  # with max_silence: when the primary last delivered a data message
        self.ending: DisconnectEvent | None = None
        self.ended_at: float | None = None  # when the end was decided (the socket closes after)
        # Whether a critical section was open then: the code in it may well leave it (e.g. on
        # the error its send got) before the disconnect is reported.
        self.ended_in_critical = False

    @property
    def conn(self) -> WebSocketConnection:
        return self.primary.conn

    @property
    def shared(self) -> Shared:
        return self._shared

    @property
    def inbox_blocked(self) -> bool:
        """Whether a delivery waits for room under ``block``: nobody reads meanwhile."""
        return self._inbox.blocked

    @property
    def can_spawn(self) -> bool:
        """Whether :meth:`spawn` may be called: the session runs and has not ended."""
        return self._group is not None and self.ending is None

    def spawn(self, task: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``task`` in this session's group: it ends with the session."""
        assert self._group is not None
        self._group.start_soon(task, *args)

    def end(self, event: DisconnectEvent) -> None:
        """End this session for ``event``'s reason (the first call wins)."""
        if self.ending is None:
            self.ending = event
            self.ended_at = anyio.current_time()
            self.ended_in_critical = self.ended_in_critical or self._shared.critical.active
        for candidate in self._candidates:
            candidate.warm.set()  # a rotation in progress gives up
        self.primary.conn.interrupt_read()  # a consumer in pull() stops reading
        if self._group is not None:
            self._group.cancel_scope.cancel()

    async def run(self, on_open: Callable[[Link], Awaitable[None]]) -> DisconnectEvent:
        """Serve until something ends the session; return why. Every socket is closed after."""
        self._inbox.puller = self
        try:
            async with anyio.create_task_group() as tg:
                self._group = tg
                if self.ending is not None:  # ended before it started (e.g. close() raced us)
                    tg.cancel_scope.cancel()
                if self._settings.should_disconnect is not None:
                    tg.start_soon(self._disconnect_checks)
                if self._settings.max_connection_age is not None:
                    tg.start_soon(self._age_rotation, self._settings.max_connection_age)
                if self._settings.max_silence is not None:
                    tg.start_soon(self._watch_silence, self._settings.max_silence)
                inline = self._settings.on_message is None
                if not inline:  # user code runs in the receive loop: not in the manager's task
                    tg.start_soon(self._receive_loop, self.primary)
                try:
                    # In this task: it reports the startup (task_status) once it is done.
                    await on_open(self.primary)
                except WebSocketError as exc:
                    # The connection died during on_connect/resubscribe; the reader reports why.
                    self._shared.logger.debug("! connection failed while opening: %s", exc)
                if inline:
                    # Then this task reads the first primary (until a rotation replaces it): a
                    # task less per connection, the one an idle connection would wait in. (While
                    # on_connect runs, only a consumer that waits for a message reads.)
                    await self._receive_loop(self.primary)
        finally:
            if self._inbox.puller is self:
                self._inbox.puller = None
            if self.ending is None and self._shared.closes_gracefully_when_cancelled():
                # Cancelled from outside an ``async with`` block: its __aexit__ shuts down
                # gracefully, but may get there after this; say so now, not by chance.
                self.end(DisconnectEvent(DisconnectReason.USER_REQUESTED, 1000, at=time.time()))
            with anyio.CancelScope(shield=True):
                candidates, self._candidates = self._candidates, []
                for candidate in candidates:
                    self._supersede(len(candidate.staged or ()))
                    self._shared.requests.forget(candidate.conn)
                    await candidate.conn.abort()
                self._shared.requests.forget(self.primary.conn)
                await self._close_primary()
        if self.ending is None:
            self.ending = DisconnectEvent(DisconnectReason.NETWORK_ERROR, at=time.time())
        return self.ending

    def send_failed(self) -> None:
        """A send found the primary connection broken. Its reader reports the end moments later;
        remember now whether a critical section was open (its code may leave it on this error)."""
        if self.ending is None and self._shared.critical.active:
            self.ended_in_critical = True

    async def _close_primary(self) -> None:
        ending = self.ending
        if ending is not None and ending.reason.is_proactive:
            with anyio.move_on_after(self._settings.close_timeout):
                await self.primary.conn.aclose(1000)
        await self.primary.conn.abort()  # a no-op once closed; otherwise the socket goes now

    # Rotation (driven by ManagedWebSocket.rotate)

    def add_candidate(self, conn: WebSocketConnection) -> Link:
        """Start serving a new connection beside the primary; it stages what it receives."""
        assert self._group is not None
        link = Link(conn, staged=True, send_rate=effective_send_rate(self._settings))
        self._candidates.append(link)
        self._serve_link(link)
        return link

    def begin_rotation(self) -> None:
        """A rotation starts: with ``dedup_key``, the primary records what it delivers from now
        on. Called before the candidate is dialled: the server may send on the new connection as
        soon as its handshake completes, before :meth:`add_candidate` runs."""
        key = self._settings.dedup_key
        if key is None:
            return
        if self._dedup is None:
            self._dedup = Deduplicator(self._safe_key(key))
        else:  # the last switch may still be filtering duplicates: that goes on
            self._dedup.restart()

    def abandon_rotation(self) -> None:
        """The rotation failed: stop recording (a filter from an earlier switch goes on)."""
        dedup = self._dedup
        if dedup is not None:
            dedup.cancel()
            if dedup.done:
                self._dedup = None

    async def discard(self, link: Link) -> None:
        """Give up a candidate: its socket is aborted; the primary stays."""
        if link in self._candidates:
            self._candidates.remove(link)
            self._supersede(len(link.staged or ()))
            link.staged = None
        self.abandon_rotation()
        link.cancel()
        self._shared.requests.forget(link.conn)
        with anyio.CancelScope(shield=True):
            await link.conn.abort()

    async def switch_to(self, link: Link, timeout: float) -> tuple[int, int] | None:
        """Make ``link`` the primary; return (messages staged, duplicates dropped). None if the
        old primary's delivery in progress did not finish within ``timeout``: under ``block``
        it waits for consumers, and one that stopped reading would hold the switch forever."""
        acquired = False
        with anyio.move_on_after(timeout):
            await self._delivery_lock.acquire()  # the old primary finishes its batch first
            acquired = True
        if not acquired:
            return None
        try:
            old = self.primary
            old.retired = True
            old.cancel()
            self._shared.requests.forget(old.conn)
            old.conn.interrupt_read()  # a consumer in pull() moves to the new primary
            self._candidates.remove(link)
            self.primary = link
            staged, link.staged = link.staged or [], None
            dedup = self._dedup
            if dedup is not None:
                dedup.switched()
            # Queued at once, over queue_size if need be: the switch must not wait for consumers
            # (the overlap is bounded: what the new connection got while warming up).
            duplicates, dropped = await self._deliver_live(staged, wait_for_room=False)
        finally:
            self._delivery_lock.release()
        if dropped:
            await self._shared.on_dropped(dropped)
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._settings.close_timeout):
            await old.conn.aclose(1000)
        with anyio.CancelScope(shield=True):
            await old.conn.abort()
        return len(staged), duplicates

    # One link: reader and keepalive

    def _serve_link(self, link: Link) -> None:
        """Start a rotation candidate's receive loop."""
        assert self._group is not None
        self._group.start_soon(self._receive_loop, link)

    def _link_failed(self, link: Link, event: DisconnectEvent) -> None:
        if link.retired:
            return
        self._shared.requests.forget(link.conn)
        if link is self.primary:
            self.end(event)
        else:  # a candidate died while warming up: the rotation fails, the primary stays
            link.failure = event
            link.warm.set()
            link.cancel()

    async def _receive_loop(self, link: Link) -> None:
        interval = self._settings.ping_interval
        timers: list[_Keepalive | AppHeartbeat] = []
        if interval is not None:
            timers.append(_Keepalive(self, link, interval))
        heartbeat = self._settings.heartbeat
        if heartbeat is not None:
            link.heartbeat = AppHeartbeat(heartbeat, self, link)
            timers.append(link.heartbeat)
        with link.task_scope():
            if len(timers) < 2:
                await self._receive(link, timers[0] if timers else None)
            else:
                await self._receive(link, _Timers(timers))

    async def _receive(self, link: Link, keepalive: _Timer | None) -> None:
        conn = link.conn
        deadline = math.inf
        try:
            while True:
                if keepalive is not None:
                    deadline = keepalive.deadline
                if link is self.primary:
                    await self._give_way_to_consumers(deadline)
                batch = []
                if anyio.current_time() < deadline:
                    # [] when a consumer's pull() took over, or at the deadline
                    batch = await conn.read_batch(deadline)
                if batch:
                    dropped = await self._deliver(link, batch)
                    while link.held:  # read ahead while the batch waited for room
                        held, link.held = link.held, []
                        dropped += await self._deliver_decoded(link, held)
                    if dropped:
                        await self._shared.on_dropped(dropped)
                    if keepalive is not None:
                        keepalive.delivered()
                elif keepalive is not None and not await keepalive.step():
                    event = DisconnectEvent(DisconnectReason.PING_TIMEOUT, at=time.time())
                    self._link_failed(link, event)
                    return
        except WebSocketError as exc:
            self._link_failed(link, event_for_error(exc))

    async def _give_way_to_consumers(self, deadline: float) -> None:
        """The primary's receive loop does not read while a consumer pulls, nor until none has
        pulled for PULL_GRACE: a consumer that comes straight back (after handling a message, or
        sending a reply) finds the socket free, where taking it back would cost it a hand-over.

        While consumers pull in quick succession this wakes once per PULL_GRACE, not per pull
        (pulls are counted, not timed: a pull costs no clock reading). It waits for the end of a
        pull when the same pull has gone on for PULL_GRACE (a consumer waiting on a quiet
        connection), so an idle connection costs no wake-ups. It returns at ``deadline`` (the
        keepalive's) whatever consumers do."""
        while self._pulling or self._pulls != self._pulls_seen:
            with anyio.CancelScope(deadline=deadline) as scope:
                if self._pulling and self._pulls == self._pulls_seen:
                    self._reader_wake = wake = anyio.Event()
                    await wake.wait()
                self._pulls_seen = self._pulls
                await anyio.sleep(PULL_GRACE)
            if scope.cancelled_caught:
                return

    async def pull(self) -> bool:
        """A consumer found the inbox empty: read the primary connection in the consumer's task
        and deliver what comes, sparing the hand-over from the receive loop's task (one trip
        through the event loop per socket read, which dominates echo latency and bulk transfers).
        The receive loop gives way meanwhile and reads again once the consumer leaves.

        Returns False when it cannot: the session is ending, another consumer is reading,
        ``on_message`` must run in the receive loop, or a delivery is under way or messages
        read ahead wait for one (it may be waiting for room that only consumers make, and what
        this one would read must queue after it). Then wait for what the receive loop queues instead. True means: look at the
        inbox again; it returns as soon as anything else is queued (:meth:`stop_pull`)."""
        if (
            self._pulling
            or self.ending is not None
            or self._settings.on_message is not None
            or self._delivery_lock.locked()
            or self.primary.held  # read ahead, not yet queued: what it would read comes after
        ):
            return False
        link = self.primary
        conn = link.conn
        self._pulling = True
        self._pulls += 1
        try:
            conn.interrupt_read()  # the receive loop's wait for the socket, if it is in one
            batch = await conn.read_batch()
            dropped = 0
            if batch and self._delivery_lock.locked():
                # A rotation's switch began meanwhile: wait for it, shielded, as these messages
                # were read and a cancelled consumer must not lose them. It does not wait for
                # room (a consumer is pulling), so the wait is short.
                with anyio.CancelScope(shield=True):
                    dropped = await self._deliver(link, batch)
            elif batch:
                dropped = await self._deliver(link, batch)  # awaits nothing before it is queued
            if dropped:
                await self._shared.on_dropped(dropped)
        except WebSocketError as exc:
            self._link_failed(link, event_for_error(exc))
        finally:
            self._pulling = False
            if self._reader_wake is not None:
                self._reader_wake.set()
                self._reader_wake = None
        return True

    def stop_pull(self) -> None:
        """Something was queued for consumers: one waiting on the socket in :meth:`pull` returns
        to take it. (After a switch the old primary was interrupted by :meth:`switch_to`.)"""
        if self._pulling:
            self.primary.conn.interrupt_read()

    async def _deliver(self, link: Link, batch: list[Any]) -> int:
        """Queue ``batch`` (or stage it, for a candidate); return how many messages the overflow
        policy dropped, for the caller to report (after the messages are queued)."""
        batch, replies = self._take_in(link, batch)
        return await self._deliver_decoded(link, batch, replies) if batch or replies else 0

    def _take_in(self, link: Link, batch: list[Any]) -> tuple[list[Any], list[str | bytes]]:
        """What every batch read goes through first: count it, feed the silence watchdog,
        decode it, and take out the control messages (heartbeat replies, server pings and
        subscription answers), returning the answers owed to the server's pings."""
        self._shared.stats.record_received(len(batch), sum(map(len, batch)))
        if self._settings.max_silence is not None and link is self.primary:
            self._data_at = anyio.current_time()
        decode = self._settings.decode
        if decode is not None:
            batch = self._decode(decode, batch)
        if self._control.active(link):
            kept, replies = self._control.consume(link, batch)
            if len(kept) < len(batch):
                # A request() may wait for one of these on the socket, in pull(): the receive
                # loop's read had the answer before the caller's interruption reached it, and
                # nothing is queued to wake the caller. (The caller's own read: a no-op.)
                self.stop_pull()
            return kept, replies
        return batch, []

    async def _send_replies(self, link: Link, replies: Sequence[str | bytes]) -> None:
        # In the order the pings were read: the receive loop and a consumer's pull may both
        # have answers to send (each took the socket in turn), and the lock is FIFO.
        async with self._reply_lock:
            for reply in replies:
                with contextlib.suppress(WebSocketError):  # it ended; its reader says why
                    await self.send(link, reply, paced=False)

    async def send(self, link: Link, data: str | bytes, *, paced: bool = True) -> None:
        """Send on ``link``'s connection, within ``send_rate_limit``: ``paced`` waits for its
        slot; otherwise (answers to the server's pings) it goes at once and takes a slot, so
        the next messages wait for it."""
        pacer = link.pacer
        if pacer is not None:
            delay = pacer.reserve(anyio.current_time())
            if delay and paced:
                await anyio.sleep(delay)
        try:
            await link.conn.send(data)
        except WebSocketClosedError:
            if link is self.primary:
                self.send_failed()
            raise
        self._shared.stats.record_sent(len(data))

    async def _deliver_decoded(
        self, link: Link, batch: list[Any], replies: Sequence[str | bytes] = ()
    ) -> int:
        """Queue (or stage) a decoded ``batch``; send ``replies``, the answers to the server's
        pings it held, at once: before any wait for room (the server would close on a slow
        consumer's account), holding the delivery lock (a consumer's pull meanwhile would
        queue later messages ahead of this batch). A consumer reading the socket itself queues
        first, as its path awaits nothing before that, so a cancel loses nothing."""
        if link.staged is not None:  # a candidate stages: nobody else reads its socket
            link.staged.extend(batch)
            if self._dedup is not None:
                assert link.staged_keys is not None  # a candidate's
                link.staged_keys.update(map(self._dedup.key_of, batch))
            if batch and not link.hot and self._is_warm(batch):
                link.hot = True
            self._check_ready(link)
            if replies:
                await self._send_replies(link, replies)
            return 0
        if self._pulling and not self._delivery_lock.locked():
            # While a consumer pulls there is no on_message and the inbox takes the batch
            # without waiting for room: nothing awaits until it is queued, so no other delivery
            # can come between, and the lock (which costs more than the rest of a bulk read's
            # delivery) is not needed.
            dropped = await self._deliver_now(link, batch)
            if replies:
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(self._settings.close_timeout),
                ):
                    await self._send_replies(link, replies)
            return dropped
        locked = False
        try:
            await self._delivery_lock.acquire()
            locked = True
            if replies:
                await self._send_replies(link, replies)
        except BaseException:
            # Cancelled (the session ended) before the batch was queued: these were read and
            # counted, so they are queued rather than lost.
            if locked:
                self._delivery_lock.release()
            self._undelivered(link, batch)
            raise
        try:
            return await self._deliver_now(link, batch)
        finally:
            self._delivery_lock.release()

    async def _deliver_now(self, link: Link, batch: list[Any]) -> int:
        if link.retired:
            return self._supersede(len(batch))
        return (await self._deliver_live(batch))[1] if batch else 0

    def _undelivered(self, link: Link, batch: list[Any]) -> None:
        """A delivery was cut short by the end of its session: queue the batch at once, or
        count it as superseded if a rotation replaced its connection meanwhile."""
        if not batch:
            return
        if link.retired:
            self._supersede(len(batch))
        else:
            self._queue_at_once(batch)

    def _queue_at_once(self, batch: list[Any]) -> None:
        """Read messages whose delivery was cut short are queued rather than lost: over the
        limit if need be, counted if the policy drops (no alert: the session is ending)."""
        self._shared.stats.messages_dropped += self._inbox.put_nowait(batch)

    def _supersede(self, count: int) -> int:
        """A rotation replaced the connection these messages came on (the other one carries the
        same feed): they are counted, not delivered. Returns 0, as none was dropped."""
        self._shared.stats.messages_superseded += count
        return 0

    async def _deliver_live(
        self, batch: list[Any], *, wait_for_room: bool = True
    ) -> tuple[int, int]:
        """Hand a batch to the consumer; return how many duplicates a rotation dropped and how
        many messages the overflow policy dropped. ``block`` waits for room unless
        ``wait_for_room`` is False or a consumer is reading the socket itself."""
        duplicates = 0
        dedup = self._dedup
        if dedup is not None:
            batch, duplicates = dedup.process(batch)
            # Counted here: the filter may go on for the new primary's first batches after the
            # switch, not only for what the candidate staged.
            self._shared.stats.duplicates_dropped += duplicates
            if dedup.done:
                self._dedup = None
            for candidate in self._candidates:
                self._check_ready(candidate)
        on_message = self._settings.on_message
        if on_message is not None:
            await self._call_on_message(on_message, batch)
        if self._settings.sequence_of is not None:
            self._detect_gaps(self._settings.sequence_of, batch)
        # While a consumer reads the socket itself, "block" must not wait for room: that
        # consumer is the one who would make it.
        if self._pulling or not wait_for_room:
            dropped = self._inbox.put_nowait(batch)
        elif self._reads_ahead and not self._inbox.has_room(len(batch)):
            await self._put_reading_ahead(self.primary, batch)
            dropped = 0
        else:
            dropped = await self._inbox.put_batch(batch)
        return duplicates, dropped

    async def _put_reading_ahead(self, link: Link, batch: list[Any]) -> None:
        """``block`` with a full queue, on a feed that must hear from us (``ping_reply``,
        ``heartbeat``): while the batch waits for room, read on, answer the server's pings and
        our heartbeat's replies at once, and hold the data read meanwhile (at most
        ``queue_size`` messages, then reading stops as usual) for the receive loop to deliver
        next, in order. Else a slow consumer would get the connection cut by the venue."""
        conn = link.conn
        held = link.held
        done = False

        async def put() -> None:
            nonlocal done
            try:
                await self._inbox.put_batch(batch)
            finally:
                done = True
                conn.interrupt_read()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(put)
                heartbeat = link.heartbeat
                try:
                    while not done and len(held) < self._settings.queue_size:
                        deadline = math.inf if heartbeat is None else heartbeat.deadline
                        more = await conn.read_batch(deadline)
                        if more:
                            await self._read_ahead(link, more)
                        elif heartbeat is not None and not done:
                            await heartbeat.step()  # its verdict waits for the loop
                except WebSocketError as exc:
                    # Caught here, not around the group (which would wrap it). The session
                    # ends: put() is cancelled and queues the batch; the loop delivers what
                    # was held.
                    self._link_failed(link, event_for_error(exc))
        except BaseException:
            if held:
                link.held = []
                self._undelivered(link, held)
            raise

    async def _read_ahead(self, link: Link, batch: list[Any]) -> None:
        batch, replies = self._take_in(link, batch)
        link.held.extend(batch)
        if replies:
            await self._send_replies(link, replies)

    async def _call_on_message(self, on_message: Callable[[Any], Any], batch: list[Any]) -> None:
        try:
            for message in batch:
                await self._shared.callbacks.call("on_message", on_message, message)
        except BaseException:
            self._queue_at_once(batch)  # the session ended while a callback ran
            raise

    def _check_ready(self, link: Link) -> None:
        """A candidate is ready to take over once it is warm and, with ``dedup_key``, the primary
        has delivered a message it staged: the two streams overlap, so the switch loses nothing
        (a primary held back by a slow consumer may not have delivered all it received)."""
        if not link.hot or link.warm.is_set():
            return
        dedup = self._dedup
        if dedup is None or dedup.overlaps(link.staged_keys or set()):
            link.warm.set()

    def _is_warm(self, batch: list[Any]) -> bool:
        is_warm = self._settings.is_warm
        if is_warm is None:
            return True
        try:
            return any(is_warm(message) for message in batch)
        except Exception:
            self._shared.stats.callback_errors += 1
            self._shared.logger.exception("! is_warm raised; the batch does not warm the link")
            return False

    def _safe_key(self, key: Callable[[Any], Hashable]) -> Callable[[Any], Hashable]:
        def safe(message: Any) -> Hashable:
            try:
                value = key(message)
                hash(value)
            except Exception:
                self._shared.stats.callback_errors += 1
                self._shared.logger.exception("! dedup_key raised; the message is not deduplicated")
                return None  # no key: delivered, never filtered
            return value

        return safe

    def _detect_gaps(self, sequence_of: Callable[[Any], int | None], batch: list[Any]) -> None:
        for message in batch:
            try:
                seq = sequence_of(message)
            except Exception:
                self._shared.stats.callback_errors += 1
                self._shared.logger.exception("! sequence_of raised; message not checked")
                continue
            if seq is None:
                continue
            gap = self._shared.ledger.observe(seq)
            if gap is not None:
                self._shared.stats.gaps_detected += 1
                self._shared.events.publish(GapDetected(first_missing=gap[0], last_missing=gap[1]))

    def _decode(self, decode: Callable[[str | bytes], Any], batch: list[Any]) -> list[Any]:
        try:
            return [decode(message) for message in batch]
        except Exception:  # noqa: BLE001 - the user's decoder; handled message by message below
            return [self._decode_one(decode, message) for message in batch]

    def _decode_one(self, decode: Callable[[str | bytes], Any], message: Any) -> Any:
        # Keep every message: the one that does not decode is delivered raw.
        try:
            return decode(message)
        except Exception:
            self._shared.stats.callback_errors += 1
            self._shared.logger.exception("! decode raised; delivering the raw message")
            return message

    # Proactive timers

    async def wait_for_critical_sections(
        self, reason: DisconnectReason, deadline: float | None = None
    ) -> bool:
        """Hold a proactive disconnect while critical sections are open (up to max_defer, or
        until ``deadline`` when the caller waits more than once for one disconnect). True if
        the wait was cut short: the disconnect goes ahead while a section is open."""
        max_defer = self._settings.max_defer
        if deadline is not None:
            max_defer = max(deadline - anyio.current_time(), 0.0)
        waited = await self._shared.critical.wait_until_clear(max_defer)
        if waited is None:
            return False
        seconds, forced = waited
        log = self._shared.logger.warning if forced else self._shared.logger.info
        log(
            "= %s disconnect deferred %.3f s by critical sections%s",
            reason.name,
            seconds,
            " (max_defer reached)" if forced else "",
        )
        self._shared.events.publish(
            DisconnectDeferred(reason=reason, waited=seconds, forced=forced)
        )
        return forced

    async def _disconnect_checks(self) -> None:
        should_disconnect = self._settings.should_disconnect
        while True:
            await anyio.sleep(self._settings.disconnect_check_interval)
            if await self._shared.callbacks.call("should_disconnect", should_disconnect):
                reason = DisconnectReason.CALLBACK_TRIGGERED
                await self.wait_for_critical_sections(reason)
                self.end(DisconnectEvent(reason, 1000, at=time.time()))
                return

    async def _watch_silence(self, limit: float) -> None:
        """``max_silence``: a connection that answers pings but sends no data is dead to a feed.
        Only data messages count (keepalive pongs do not). While the queue is full under
        ``block`` nobody reads, so that silence is ours, not the server's."""
        self._data_at = anyio.current_time()
        while True:
            await anyio.sleep_until(self._data_at + limit)
            now = anyio.current_time()
            if self._inbox.blocked:
                self._data_at = now
            elif now >= self._data_at + limit:
                self._shared.logger.warning("! no data message within %g s: reconnecting", limit)
                self.end(DisconnectEvent(DisconnectReason.DATA_TIMEOUT, at=time.time()))
                return

    async def _age_rotation(self, max_age: float) -> None:
        failures = 0
        while True:
            age = anyio.current_time() - self.primary.opened_at
            delay = max(max_age - age, 0.0)
            if failures:
                delay = max(delay, backoff_delay(self._settings, failures))
            await anyio.sleep(delay)
            rotated = await self._shared.rotate(DisconnectReason.SCHEDULED)
            failures = 0 if rotated else failures + 1


class _Keepalive:
    """The keepalive of a receive loop that pings between its own reads (SPEC 5): a ping every
    ``ping_interval``; any inbound traffic within ``ping_timeout`` of it counts as liveness,
    none is PING_TIMEOUT. The loop waits until :attr:`deadline` and calls :meth:`step` then.
    Whoever reads the pong (the loop, or a consumer in pull()) records the round trip."""

    __slots__ = ("_conn", "_interval", "_received_before", "_sent_at", "_session", "deadline")

    def __init__(self, session: Session, link: Link, interval: float) -> None:
        self._session = session
        self._conn = link.conn
        self._interval = interval
        self._sent_at: float | None = None  # a ping awaits its pong (or any traffic)
        self._received_before = 0
        self.deadline = anyio.current_time() + interval

    async def step(self) -> bool:
        """Once the deadline has passed: ping, or judge the ping in flight. False: the
        connection is dead."""
        session = self._session
        now = anyio.current_time()
        if now < self.deadline:
            return True
        settings = session._settings
        if self._sent_at is None:
            self._received_before = self._conn.bytes_received
            self._sent_at = now
            self.deadline = now + settings.ping_timeout
            # Bounded like a ping() was: a send that cannot go out counts against the timeout.
            with (
                anyio.move_on_after(settings.ping_timeout),
                contextlib.suppress(WebSocketError),  # it ended; the next read says why
            ):
                await self._conn.send_ping(self._answered)
            return True
        if self._conn.bytes_received > self._received_before or session._inbox.blocked:
            self._next(now)  # any inbound traffic counts as liveness (SPEC 5)
            return True
        session._shared.logger.warning(
            "! no pong within %g s: connection considered dead", settings.ping_timeout
        )
        return False

    def delivered(self) -> None:
        """The loop handed a batch over, which may have kept it from reading (a full queue,
        a rotation's switch, an on_alert callback) past the ping's time: no verdict from that
        wait, ping again."""
        if self._sent_at is not None and anyio.current_time() >= self.deadline:
            self._sent_at = None

    def _answered(self, rtt: float) -> None:
        stats = self._session._shared.stats
        stats.latency = rtt
        self._session._shared.logger.debug("%% pong after %.1f ms", rtt * 1000)
        self._next(anyio.current_time())

    def _next(self, now: float) -> None:
        self._sent_at = None
        self.deadline = now + self._interval


class _Timer(Protocol):
    """What a receive loop runs between its reads: wait until ``deadline``, then ``step()``."""

    @property
    def deadline(self) -> float: ...

    async def step(self) -> bool: ...

    def delivered(self) -> None: ...


class _Timers:
    """The protocol keepalive and the application heartbeat, for one receive loop."""

    __slots__ = ("_timers",)

    def __init__(self, timers: list[_Keepalive | AppHeartbeat]) -> None:
        self._timers = timers

    @property
    def deadline(self) -> float:
        return min(timer.deadline for timer in self._timers)

    async def step(self) -> bool:
        for timer in self._timers:
            if not await timer.step():
                return False
        return True

    def delivered(self) -> None:
        for timer in self._timers:
            timer.delivered()
