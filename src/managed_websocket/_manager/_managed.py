"""ManagedWebSocket: the public object — lifetime, operations and properties.

The supervisor loop it runs lives in ``_supervisor.py``; this module adds ``run()`` /
``async with`` (one task group, errors surfaced as plain exceptions), the operations of SPEC
section 4, and read-only properties. Operations set the supervisor's intent and cancel scopes;
they never poll.
"""

from __future__ import annotations

import logging
import ssl
import sys
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from .._events import EventListener
from .._exceptions import (
    WebSocketClosedError,
    WebSocketSubscriptionError,
    WebSocketTimeoutError,
)
from .._ledger import Outage
from .._messages import encode_outgoing
from .._models import (
    ConnectionState,
    DisconnectEvent,
    DisconnectReason,
    WebSocketStats,
)
from .._settings import ShouldReconnect, UrlProvider
from ._acks import Expected
from ._groups import enter_owner_group, exit_owner_group, unwrap_group
from ._inbox import Inbox, InboxClosed
from ._session import Link, Session
from ._supervisor import Supervisor

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

    from .._settings import ManagedWebSocketOptions

__all__ = ["ManagedWebSocket", "open_managed_websocket"]

logger = logging.getLogger("managed_websocket")

_S = ConnectionState
_UP = (_S.CONNECTED, _S.CONNECTING)


class ManagedWebSocket(Supervisor):
    """A WebSocket connection that stays alive: reconnects, resubscribes and measures itself.

    Use ``async with ManagedWebSocket(url, **options) as ws`` (or :func:`open_managed_websocket`),
    or embed it with ``await task_group.start(ws.run)``. Options are listed in
    :class:`ManagedWebSocketOptions`; see the docs for the state machine and reconnect rules.
    """

    def __init__(
        self, url: str | UrlProvider | None = None, **options: Unpack[ManagedWebSocketOptions]
    ) -> None:
        """``url``: a ``ws://``/``wss://`` URL, or a zero-argument callable (sync or async) that
        returns one, called before every dial (fresh credentials per attempt). Or, instead,
        ``urls=[...]``: endpoints for failover, each with its own backoff, the first preferred
        whenever it is available."""
        super().__init__(url, options)

    def __repr__(self) -> str:
        return f"<ManagedWebSocket {self._endpoint} {self.state.name}>"

    # ------------------------------------------------------------------ lifetime

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the manager until it is shut down; for ``await task_group.start(ws.run)``.

        Reports started once the first connection is open. Returns after ``shutdown()`` /
        ``force_close()``; raises the fatal error (e.g. :class:`WebSocketReconnectError`, a
        fatal :class:`WebSocketHandshakeError`) when the manager fails.
        """
        if self._running or self._shutdown:
            raise RuntimeError("a ManagedWebSocket can run only once")
        self._running = True
        self._stats.start()
        # The supervisor runs in this task (a task less per manager); it reports started
        # through _task_status once the first connection is fully open.
        self._task_status = task_status
        try:
            if self._event_callback is None:
                await self._run_supervisor()
            else:
                # A group only for the on_event deliverer: a manager without it costs none.
                async with anyio.create_task_group() as outer:
                    outer.start_soon(self._deliver_events, self._event_callback)
                    try:
                        await self._run_supervisor()
                    finally:
                        # The hub is closed: on_event gets what is left, within close_timeout.
                        outer.cancel_scope.deadline = (
                            anyio.current_time() + self._settings.close_timeout
                        )
        except BaseExceptionGroup as group:
            raise unwrap_group(group) from None
        if self._fatal is not None:
            raise self._fatal
        self._report_started()  # shut down before the first connection opened

    async def _run_supervisor(self) -> None:
        # No task group: the supervisor is the only task of its own. (Held alerts are reported
        # by a task of the session while connected, by the supervisor's waits between
        # connections: see Supervisor._alerts_held.)
        with anyio.CancelScope() as scope:
            self._run_scope = scope
            await self._supervise()

    async def __aenter__(self) -> Self:
        self._owner_group = await enter_owner_group(self.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        group, self._owner_group = self._owner_group, None
        assert group is not None, "__aexit__ without __aenter__"
        return await exit_owner_group(group, self.shutdown, exc_type, exc, tb)

    # ------------------------------------------------------------------ operations

    async def send(self, data: Any) -> None:
        """Send ``data``: dict/list as JSON text, str as text, bytes as binary.

        Raises:
            WebSocketClosedError: not connected.
            TypeError: ``data`` has another type.
        """
        encoded = encode_outgoing(data)
        await self._send_encoded(encoded)

    async def receive(self, timeout: float | None = None) -> Any:
        """The next message. Waits across reconnects.

        Raises:
            WebSocketTimeoutError: nothing arrived within ``timeout``.
            WebSocketClosedError: the manager was closed and every queued message was taken.
            WebSocketReconnectError: (or another fatal error) the manager failed.
        """
        inbox = self._inbox
        with anyio.move_on_after(timeout):
            try:
                return await inbox.get()
            except InboxClosed:
                raise WebSocketClosedError("the managed WebSocket is closed", code=1000) from None
        raise WebSocketTimeoutError("receive", timeout if timeout is not None else 0.0)

    async def request(
        self, message: Any, *, match: Callable[[Any], object], timeout: float | None = None
    ) -> Any:
        """Send ``message`` (like :meth:`send`) and return its answer: the first inbound message
        on this connection that ``match`` accepts (it gets each message as ``decode`` made it,
        e.g. ``lambda m: isinstance(m, dict) and m.get("id") == 7``). The answer is not
        delivered to :meth:`receive` / ``async for``; every other message is, in order. For
        WebSocket APIs that answer requests (orders, queries) on the feed's connection.

        The answer counts in ``stats.messages_consumed``. A ``match`` that raises is logged,
        counted in ``callback_errors`` and taken as "no". An answer that comes after the
        timeout (or after the caller was cancelled) is delivered like any other message.

        Raises:
            WebSocketTimeoutError: no answer within ``timeout`` seconds (None: no limit).
            WebSocketClosedError: not connected, or the connection ended before the answer
                (it is not sent again on the next connection).
            TypeError: ``message`` has a type :meth:`send` does not take.
        """
        encoded = encode_outgoing(message)
        session = self._session
        if session is None or not self._state.state.can_send():
            raise WebSocketClosedError("not connected", code=1006)
        link = session.primary
        expected = self._requests.expect(link.conn, match)
        try:
            if timeout is None:  # no cancel scope: it would cost more than the rest here
                return await self._answer(session, link, encoded, expected)
            with anyio.move_on_after(timeout):
                return await self._answer(session, link, encoded, expected)
            if expected.done.is_set():  # answered (or lost) just as the time ran out
                return _outcome(expected, link)
        except BaseException:
            # Cancelled after its answer was read: nothing read is lost, it is queued for the
            # consumer like a late answer (after what was queued meanwhile).
            if expected.done.is_set() and not expected.lost:
                expected.lost = True  # taken care of
                self._stats.messages_consumed -= 1
                self._stats.messages_dropped += self._inbox.put_nowait([expected.answer])
            raise
        finally:
            self._requests.unexpect(expected)  # no matcher outlives its request
        raise WebSocketTimeoutError("request", timeout)

    async def _answer(
        self, session: Session, link: Link, encoded: str | bytes, expected: Expected
    ) -> Any:
        await session.send(link, encoded)
        # Read the socket in this task while nobody else does (like receive()): no hand-over
        # from the receive loop's task. Otherwise whoever reads hands the answer over.
        while not expected.done.is_set():
            if not await session.pull():
                await expected.done.wait()
        return _outcome(expected, link)

    def stream(self) -> MessageIterator:
        """Every message, across reconnects, until close/shutdown (then it ends) or failure (then
        it raises the error). The same as ``async for message in ws``."""
        return MessageIterator(self._inbox, batches=False)

    def batches(self) -> MessageIterator:
        """Like :meth:`stream`, but yields lists: every message available at once."""
        return MessageIterator(self._inbox, batches=True)

    def __aiter__(self) -> MessageIterator:
        return self.stream()

    async def subscribe(self, *channels: str) -> None:
        """Add channels (kept in order, replayed after every connect).

        Sent now if connected (batched as the ``subscription_protocol`` allows); with an
        acknowledging protocol this returns once the server acknowledged. Not connected (or
        the connection is lost before the answer): they are sent by the replay of the next
        connection, whose failures are reported as :class:`SubscriptionFailed` events and
        ``on_alert("subscription_failed", ...)``.

        Raises:
            WebSocketSubscriptionError: the server refused, or did not answer within
                ``ack_timeout`` (those channels are not subscribed then); or, before anything
                is sent, ``max_subscriptions`` would be exceeded or a channel does not fit in
                a request.
        """
        new = [c for c in dict.fromkeys(channels) if c not in self._subscriptions]
        if not new:
            return
        self._check_subscribable(new)
        for channel in new:
            self._subscriptions[channel] = None
        session, announced = self._session, self._announced
        if session is None or announced is None or not self.is_connected:
            return
        todo = [c for c in new if c not in announced]
        announced.update(todo)
        sent = await self._send_requests(session.primary, todo, subscribe=True)
        failures = await self._await_answers(sent, "subscribe")
        if failures:
            for error in failures:
                self._drop_channels(error.channels, announced)
            raise _combined(failures)

    async def unsubscribe(self, *channels: str) -> None:
        """Remove channels; the unsubscribe request is sent now if connected (and, with an
        acknowledging protocol, this returns once the server acknowledged).

        Raises:
            WebSocketSubscriptionError: the server refused or did not answer in time (the
                channels are removed all the same: they are not replayed).
        """
        removed = [c for c in dict.fromkeys(channels) if c in self._subscriptions]
        for channel in removed:
            del self._subscriptions[channel]
        session, announced = self._session, self._announced
        if session is None or announced is None or not self.is_connected:
            return
        todo = [c for c in removed if c in announced]  # never sent on this connection: skip
        announced.difference_update(todo)
        sent = await self._send_requests(session.primary, todo, subscribe=False)
        failures = await self._await_answers(sent, "unsubscribe")
        if failures:
            raise _combined(failures)

    async def request_disconnect(
        self,
        reconnect_after: float | None = None,
        reason: DisconnectReason = DisconnectReason.USER_REQUESTED,
    ) -> None:
        """Close gracefully (1000) now; returns once disconnected, without waiting to reconnect.

        The manager reconnects after ``reconnect_after`` seconds, or when ``should_reconnect``
        allows, or stays DISCONNECTED until :meth:`connect`. No-op unless CONNECTED. While a
        :meth:`critical` section is open it waits (at most ``max_defer``) before closing.
        """
        session = self._session
        if session is None or not self.is_connected:
            logger.warning("request_disconnect() ignored in state %s", self.state.name)
            return
        if reconnect_after is not None and not reconnect_after >= 0:
            raise ValueError("reconnect_after must be >= 0")
        await session.wait_for_critical_sections(reason)
        if session is not self._session:
            return  # the connection ended while we waited
        self._reconnect_after = reconnect_after
        session.end(DisconnectEvent(reason, 1000, at=time.time()))
        await self._state.wait_for(lambda s: s is not _S.CONNECTED, None)

    async def rotate(self) -> bool:
        """Replace the connection without a gap (make-before-break).

        Opens a second connection while the current one keeps delivering, replays the
        subscriptions on it, waits until it is warm (its first data message, or ``is_warm``;
        at most ``rotation_timeout``), switches the consumer over (dropping duplicates when
        ``dedup_key`` is set) and closes the old connection with 1000. Waits for open
        :meth:`critical` sections first. Returns False, keeping the old connection, if the new
        one fails or does not warm up in time. Logged, published (:class:`RotationStarted`) and
        recorded in :attr:`outages` with reason USER_REQUESTED; the ``max_connection_age`` timer's
        rotations say SCHEDULED.
        """
        return await self._rotate(DisconnectReason.USER_REQUESTED)

    def critical(self) -> AbstractAsyncContextManager[None]:
        """``async with ws.critical():`` holds every proactive disconnect (should_disconnect,
        request_disconnect, rotation, max_connection_age) until the last open section closes, or
        ``max_defer`` runs out. Nestable, usable from many tasks. Reactive disconnects cannot
        be held; one that happens inside a section is reported as such in :meth:`events`."""
        return self._critical.section()

    def events(self, buffer: int = 256) -> EventListener:
        """A new listener of lifecycle events (``async for event in ws.events()``).

        Each listener has its own bounded buffer (``buffer`` events; 0 = unbounded): a slow
        listener never blocks the feed; what does not fit is dropped and counted in
        ``listener.dropped``. Close it with ``aclose()`` or use it as ``async with``.
        """
        return self._events.listen(buffer)

    @property
    def outages(self) -> tuple[Outage, ...]:
        """One record per interval without a live connection (or with a replaced one)."""
        return self._ledger.records

    async def schedule_reconnect(self, delay: float) -> None:
        """Reconnect after ``delay`` seconds, run by the manager. From DISCONNECTED/RECONNECTING."""
        if not delay >= 0:
            raise ValueError("delay must be >= 0")
        if not self.state.can_connect() or not self._running:
            logger.warning("schedule_reconnect() ignored in state %s", self.state.name)
            return
        self._reopen_inbox()
        self._stay_down = False
        self._dial_at = anyio.current_time() + delay
        self._wake()

    async def connect(self) -> None:
        """(Re)open after ``close()``, ``kill()`` or a disconnect that did not reconnect by itself.

        Waits until connected. Raises WebSocketClosedError after shutdown, or the fatal error.
        """
        if self._shutdown:
            if self._fatal is not None:
                raise self._fatal  # the manager failed: say why, not just "closed"
            raise WebSocketClosedError("the managed WebSocket is shut down", code=1000)
        if not self._running:
            raise RuntimeError("start the manager first: async with, or task_group.start(ws.run)")
        if self.state is not _S.CONNECTED:
            self._reopen_inbox()
            self._stay_down = False
            if self.state is _S.DISCONNECTED:
                self._dial_at = anyio.current_time()
                self._wake()
        if not await self._state.wait_for(lambda s: s is _S.CONNECTED, None):
            if self._fatal is not None:
                raise self._fatal
            raise WebSocketClosedError("the managed WebSocket was shut down", code=1000)

    async def close(self) -> None:
        """Close gracefully (1000) to DISCONNECTED. Not terminal: :meth:`connect` works again.

        Consumers drain what is queued, then their iteration ends. Idempotent.
        """
        if self._shutdown:
            return
        await self._stop(DisconnectReason.USER_REQUESTED)
        self._inbox.close()

    async def kill(self) -> None:
        """Abort the TCP connection without a close frame (as if the server kicked us).

        Reason KILLED, state DISCONNECTED, recoverable with :meth:`connect`.
        """
        if self._shutdown:
            return
        # The session aborts the socket for a reactive reason such as KILLED; _stop returns only
        # once that is done, so the server has seen the TCP connection go.
        await self._stop(DisconnectReason.KILLED)

    async def _stop(self, reason: DisconnectReason) -> None:
        self._stay_down = True
        self._dial_at = None
        session = self._session
        if session is not None:
            session.end(
                DisconnectEvent(
                    reason, None if reason is DisconnectReason.KILLED else 1000, at=time.time()
                )
            )
        self._wake()
        if self._running:
            await self._state.wait_for(lambda s: s is _S.DISCONNECTED, None)

    async def shutdown(self) -> None:
        """Terminal: close gracefully, end every task; consumers drain then stop. Idempotent."""
        await self._terminate(graceful=True)

    async def force_close(self) -> None:
        """Terminal, at once: abort the socket without waiting for the close handshake."""
        await self._terminate(graceful=False)

    async def _terminate(self, *, graceful: bool) -> None:
        self._shutdown = True
        session = self._session
        if session is not None:
            # Say why first: once the socket is aborted the reader would report a network error.
            session.end(DisconnectEvent(DisconnectReason.USER_REQUESTED, 1000, at=time.time()))
            if not graceful:
                await session.conn.abort()
        if self._run_scope is None:
            self._state.set(_S.CLOSED)
            self._inbox.close()
            return
        if not self.state.is_terminal():
            self._state.set(_S.CLOSING)
        self._run_scope.cancel()
        await self._state.wait_for(lambda s: s is _S.CLOSED, None)

    def _reopen_inbox(self) -> None:
        if self._inbox.closed and self._fatal is None:
            self._inbox = Inbox(self._settings.queue_size, self._settings.overflow)

    async def wait_for_reconnect_window(
        self, should_reconnect: ShouldReconnect | None = None, timeout: float | None = None
    ) -> bool:
        """Wait until the predicate allows a reconnect: True, or a delay (> 0) that then elapses.

        Polls every ``reconnect_check_interval``. Returns False on timeout. Changes nothing.
        """
        # ``is None``, not ``or``: a callable object may well be falsy (e.g. it defines __len__).
        predicate = (
            self._settings.should_reconnect if should_reconnect is None else should_reconnect
        )
        if predicate is None:
            raise ValueError("no should_reconnect predicate given or configured")
        with anyio.move_on_after(timeout):
            await anyio.sleep(await self._ask_should_reconnect(predicate))
            return True
        return False

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """True once CONNECTED; False on timeout or once the manager is closed."""
        return await self._state.wait_for(lambda s: s is _S.CONNECTED, timeout)

    async def wait_disconnected(self, timeout: float | None = None) -> bool:
        """True once the connection is down (DISCONNECTED, RECONNECTING, CLOSING, CLOSED), even
        if only briefly: every transition is seen. False on timeout."""
        return await self._state.wait_for(lambda s: s not in _UP, timeout)

    # ------------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        """The URL (of the last dial, with a provider) with its secrets masked."""
        return str(self._endpoint)

    @property
    def state(self) -> ConnectionState:
        """The current :class:`ConnectionState`; only the manager changes it."""
        return self._state.state

    @property
    def stats(self) -> WebSocketStats:
        """The live counters (not a copy); see :class:`WebSocketStats`."""
        return self._stats

    @property
    def is_connected(self) -> bool:
        """True when the state is CONNECTED."""
        return self.state is _S.CONNECTED

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The subscribed channels, in the order they were added."""
        return tuple(self._subscriptions)

    @property
    def connection_duration(self) -> float:
        """Seconds the current connection has been open; 0.0 when not connected."""
        return self._stats.connection_time if self.is_connected else 0.0

    @property
    def is_dead(self) -> bool:
        """True in DISCONNECTED or CLOSED: no connection, and none being dialled."""
        return self.state in (_S.DISCONNECTED, _S.CLOSED)

    @property
    def is_recoverable(self) -> bool:
        """Dead but not shut down: :meth:`connect` can bring it back."""
        return self.is_dead and not self._shutdown

    @property
    def is_shutdown(self) -> bool:
        """True once ``shutdown()``/``force_close()`` was called or the manager failed."""
        return self._shutdown

    @property
    def latency(self) -> float | None:
        """The last keepalive round trip, in seconds (None before the first pong)."""
        return self._stats.latency

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose for the current connection, or None."""
        session = self._session
        return session.conn.subprotocol if session is not None else None

    @property
    def last_disconnect(self) -> DisconnectEvent | None:
        """Why the last connection ended: reason, close code and reason, error."""
        return self._last_disconnect

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """The ``ssl_context`` option (None: the default verified context for ``wss://``)."""
        return self._settings.ssl_context


class MessageIterator:
    """``async for`` over a manager's messages (or batches). Ends when the manager closes."""

    def __init__(self, inbox: Inbox, *, batches: bool) -> None:
        self._next: Callable[[], Any] = inbox.get_batch if batches else inbox.get

    def __aiter__(self) -> MessageIterator:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._next()
        except InboxClosed:
            raise StopAsyncIteration from None


def _outcome(expected: Expected, link: Link) -> Any:
    """The answer of a request that is done, or why there is none."""
    if expected.lost:
        raise WebSocketClosedError(
            "the connection ended before the answer to the request",
            code=link.conn.close_code or 1006,
        )
    return expected.answer


def _combined(failures: list[WebSocketSubscriptionError]) -> WebSocketSubscriptionError:
    """One error for a call whose requests failed: every channel, the first answer's reason."""
    if len(failures) == 1:
        return failures[0]
    first = failures[0]
    channels = [channel for error in failures for channel in error.channels]
    return WebSocketSubscriptionError(
        channels, first.reason, code=first.code, operation=first.operation
    )


def open_managed_websocket(
    url: str | UrlProvider | None = None, **options: Unpack[ManagedWebSocketOptions]
) -> ManagedWebSocket:
    """``async with open_managed_websocket(url, **options) as ws:`` — see :class:`ManagedWebSocket`."""
    return ManagedWebSocket(url, **options)
