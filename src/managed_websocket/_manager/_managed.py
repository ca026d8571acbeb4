"""ManagedWebSocket: the supervisor loop and the public operations around it.

Shape. ``run()`` owns one task group. Its only long-lived task is the supervisor, a loop (never
recursion): dial through the backoff policy → serve the connection in a :class:`Session` (its own
cancel scope with the receive, keepalive and check loops) → decide with
:func:`plan_after_disconnect` → wait or dial again. Public operations never poll flags: they set
the intent (``_stay_down``, ``_dial_at``, ``_reconnect_after``) and cancel the scope of whatever
the supervisor is doing now (``_phase_scope``) or end the session. ``shutdown()`` and
``force_close()`` cancel the whole task group, so no reconnect can ever follow them.

Messages reach consumers through an :class:`Inbox` (batches on an anyio memory object stream).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from .._alerts import AlertThrottle
from .._backoff import exhausted, reconnect_delay
from .._connection import WebSocketConnection
from .._exceptions import (
    WebSocketClosedError,
    WebSocketConnectionError,
    WebSocketError,
    WebSocketHandshakeError,
    WebSocketReconnectError,
    WebSocketTimeoutError,
    WebSocketTLSError,
)
from .._handshake import open_websocket_connection
from .._messages import encode_outgoing
from .._models import (
    ConnectionState,
    DisconnectEvent,
    DisconnectReason,
    ReconnectStrategy,
    WebSocketStats,
)
from .._settings import ShouldReconnect, resolve_settings
from .._url import parse_ws_url
from ._callbacks import CallbackRunner
from ._groups import unwrap_group
from ._inbox import Inbox, InboxClosed
from ._plan import plan_after_disconnect
from ._session import Session
from ._state import StateMachine

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

    from .._settings import ManagedWebSocketOptions

__all__ = ["ManagedWebSocket", "open_managed_websocket"]

logger = logging.getLogger("managed_websocket")

_S = ConnectionState
_UP = (_S.CONNECTED, _S.CONNECTING)


class ManagedWebSocket:
    """A WebSocket connection that stays alive: reconnects, resubscribes and measures itself.

    Use ``async with ManagedWebSocket(url, **options) as ws`` (or :func:`open_managed_websocket`),
    or embed it with ``await task_group.start(ws.run)``. Options are listed in
    :class:`ManagedWebSocketOptions`; see the docs for the state machine and reconnect rules.
    """

    def __init__(self, url: str, **options: Unpack[ManagedWebSocketOptions]) -> None:
        self._url = parse_ws_url(url)
        self._settings = resolve_settings(options)
        self._stats = WebSocketStats(clock=anyio.current_time)
        self._callbacks = CallbackRunner(self._stats, logger)
        self._state = StateMachine(logger, str(self._url))
        self._inbox = Inbox(self._settings.queue_size, self._settings.overflow)
        self._subscriptions: dict[str, None] = {}
        # Channels subscribed on the current connection; None until on_connect has returned
        # (until then subscribe() leaves the sending to the replay, so nothing goes out twice).
        self._announced: set[str] | None = None
        self._session: Session | None = None
        self._last_disconnect: DisconnectEvent | None = None
        self._disconnect_alerts = AlertThrottle(self._settings.disconnect_alert_interval)
        self._drop_alerts = AlertThrottle(self._settings.disconnect_alert_interval)
        self._dropped_since_alert = 0
        # Intent, written by public operations and read by the supervisor.
        self._stay_down = False
        self._dial_at: float | None = None
        self._reconnect_after: float | None = None
        self._phase_scope: anyio.CancelScope | None = None
        # Lifetime
        self._run_scope: anyio.CancelScope | None = None
        self._running = False
        self._shutdown = False
        self._fatal: BaseException | None = None
        self._settled = anyio.Event()  # first connection fully open, or failure
        self._owner_group: anyio.abc.TaskGroup | None = None

    def __repr__(self) -> str:
        return f"<ManagedWebSocket {self._url} {self.state.name}>"

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
        try:
            async with anyio.create_task_group() as tg:
                self._run_scope = tg.cancel_scope
                tg.start_soon(self._supervise)
                await self._settled.wait()
                if self._fatal is None:
                    task_status.started()
        except BaseExceptionGroup as group:
            raise unwrap_group(group) from None
        if self._fatal is not None:
            raise self._fatal

    async def __aenter__(self) -> Self:
        group = anyio.create_task_group()
        await group.__aenter__()
        try:
            await group.start(self.run)
        except BaseException as exc:
            group.cancel_scope.cancel()
            try:
                await group.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseExceptionGroup as nested:
                raise unwrap_group(nested, prefer=exc) from None
            raise
        self._owner_group = group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        group, self._owner_group = self._owner_group, None
        assert group is not None, "__aexit__ without __aenter__"
        with anyio.CancelScope(shield=True):
            await self.shutdown()
        try:
            return await group.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as nested:
            raise unwrap_group(nested, prefer=exc) from None

    # ------------------------------------------------------------------ supervisor

    async def _supervise(self) -> None:
        try:
            await self._supervise_loop()
        except WebSocketError as exc:
            self._fatal = exc
            logger.error("! %s failed: %s", self._url, exc)
        finally:
            self._shutdown = True
            self._session = None
            self._state.set(_S.CLOSED)
            self._inbox.close(self._fatal)
            self._settled.set()

    async def _supervise_loop(self) -> None:
        attempt, floor = 0, 0.0
        while True:
            # The attempt that connected: a short-lived connection after it counts on from there.
            conn, attempt = await self._dial(attempt, floor)
            if conn is None:  # close()/kill() while dialling
                plan_wait, poll = True, False
            else:
                event, connected_for = await self._serve(conn)
                # The socket was closed under a shield: a shutdown()/force_close() that came
                # meanwhile (state CLOSING) is delivered here, before the state moves on.
                await anyio.lowlevel.checkpoint_if_cancelled()
                plan = plan_after_disconnect(
                    event,
                    settings=self._settings,
                    attempt=attempt,
                    connected_for=connected_for,
                    stay_down=self._stay_down,
                    reconnect_after=self._reconnect_after,
                )
                self._reconnect_after = None
                attempt, floor = plan.attempt, plan.floor
                if plan.reconnect_after is not None:
                    self._dial_at = anyio.current_time() + plan.reconnect_after
                plan_wait, poll = not plan.reconnect, plan.poll_should_reconnect
                self._state.set(_S.RECONNECTING if plan.reconnect else _S.DISCONNECTED)
                await self._after_disconnect(event)
            if plan_wait:
                await self._wait_for_permission(poll)
                attempt, floor = 0, 0.0

    async def _dial(self, attempt: int, floor: float) -> tuple[WebSocketConnection | None, int]:
        """Dial until a connection opens, through the backoff policy; return it (None if
        interrupted) and the attempt it was."""
        last_error = self._last_disconnect.error if self._last_disconnect else None
        self._stay_down = False
        with anyio.CancelScope() as scope:
            self._phase_scope = scope
            while True:
                if attempt > 0:
                    if exhausted(attempt, self._settings.max_reconnect_attempts):
                        raise WebSocketReconnectError(attempt - 1, last_error)
                    delay = await self._delay_before(attempt, floor)
                    self._state.set(_S.RECONNECTING)
                    logger.info(
                        "= reconnecting to %s in %.2f s (attempt %d)", self._url, delay, attempt
                    )
                    await anyio.sleep(delay)
                    self._stats.reconnect_attempts += 1
                elif self._state.state is not _S.RECONNECTING:
                    self._state.set(_S.CONNECTING)
                try:
                    conn = await self._open()
                except WebSocketError as exc:
                    if _is_fatal(exc):
                        raise
                    last_error = exc
                    logger.warning("! connecting to %s failed: %s", self._url, exc)
                    floor = (
                        exc.retry_after or 0.0 if isinstance(exc, WebSocketHandshakeError) else 0.0
                    )
                    attempt += 1
                    continue
                if not (scope.cancel_called or self._shutdown):
                    return conn, attempt
                # close()/kill()/shutdown() came as the handshake completed: nobody wants it.
                with anyio.CancelScope(shield=True):
                    await conn.abort()
                await anyio.lowlevel.checkpoint()  # shutdown: the run scope is cancelled
                break
        return None, attempt

    async def _open(self) -> WebSocketConnection:
        s = self._settings
        return await open_websocket_connection(
            self._url,
            headers=s.headers,
            subprotocols=s.subprotocols,
            ssl_context=s.ssl_context,
            connection_timeout=s.connection_timeout,
            close_timeout=s.close_timeout,
            max_message_size=s.max_message_size,
        )

    async def _delay_before(self, attempt: int, floor: float) -> float:
        s = self._settings
        if (
            s.reconnect_strategy is ReconnectStrategy.CALLBACK_CONTROLLED
            and s.should_reconnect is not None
        ):
            return max(await self._ask_should_reconnect(s.should_reconnect), floor)
        return reconnect_delay(
            s.reconnect_strategy,
            attempt,
            base=s.reconnect_delay,
            maximum=s.max_reconnect_delay,
            jitter=s.reconnect_jitter,
            floor=floor,
        )

    async def _ask_should_reconnect(self, predicate: ShouldReconnect) -> float:
        """CALLBACK_CONTROLLED: True → now, a number > 0 → that delay, else ask again later."""
        while True:
            verdict = await self._callbacks.call("should_reconnect", predicate)
            delay = _reconnect_verdict(verdict)
            if delay is not None:
                return delay
            await anyio.sleep(self._settings.reconnect_check_interval)

    async def _serve(self, conn: WebSocketConnection) -> tuple[DisconnectEvent, float]:
        session = Session(
            conn,
            settings=self._settings,
            stats=self._stats,
            inbox=self._inbox,
            callbacks=self._callbacks,
            on_dropped=self._on_dropped,
            logger=logger,
        )
        self._session = session
        self._announced = None
        self._phase_scope = None
        self._state.set(_S.CONNECTED)
        self._stats.record_connect()
        started = anyio.current_time()
        logger.info("= connected to %s", self._url)
        try:
            event = await session.run(self._on_open)
        finally:
            self._session = None
            self._stats.record_disconnect(
                session.ending.reason if session.ending else DisconnectReason.NETWORK_ERROR
            )
        return event, anyio.current_time() - started

    async def _on_open(self) -> None:
        await self._callbacks.call("on_connect", self._settings.on_connect)
        announced = self._announced = set()
        for channel in list(self._subscriptions):
            # subscribe()/unsubscribe() may run while we await: send each live channel once.
            if channel in self._subscriptions and channel not in announced:
                announced.add(channel)
                await self._send_control(
                    self._settings.subscription_protocol.subscribe_message(channel)
                )
        # Startup (async with / tg.start(ws.run)) returns once the connection is fully open:
        # on_connect has run and the subscriptions are replayed, on both backends alike.
        self._settled.set()

    async def _after_disconnect(self, event: DisconnectEvent) -> None:
        self._last_disconnect = event
        level = logging.INFO if event.reason.is_proactive else logging.WARNING
        logger.log(
            level, "= disconnected from %s: %s (code %s)", self._url, event.reason.name, event.code
        )
        if event.close_reason:
            logger.debug("  close reason: %r", event.close_reason)
        await self._callbacks.call("on_disconnect", self._settings.on_disconnect, event.reason)
        count = self._disconnect_alerts.record(anyio.current_time())
        if count is not None:
            await self._callbacks.call(
                "on_disconnect_alert", self._settings.on_disconnect_alert, event.reason, count
            )

    async def _on_dropped(self, count: int) -> None:
        self._stats.messages_dropped += count
        self._dropped_since_alert += count
        if self._drop_alerts.record(anyio.current_time()) is None:
            return
        dropped, self._dropped_since_alert = self._dropped_since_alert, 0
        logger.warning(
            "! message queue full: dropped %d messages (%s)", dropped, self._settings.overflow
        )
        await self._callbacks.call(
            "on_alert",
            self._settings.on_alert,
            "queue_overflow",
            f"message queue full: dropped {dropped} messages",
            {
                "queue_size": self._settings.queue_size,
                "dropped": dropped,
                "overflow": self._settings.overflow,
            },
        )

    async def _wait_for_permission(self, poll: bool) -> None:
        """Wait in DISCONNECTED (or RECONNECTING while a dial is scheduled) until allowed to dial."""
        while True:
            now = anyio.current_time()
            if self._dial_at is not None and self._dial_at <= now:
                self._dial_at = None
                return
            wait = float("inf") if self._dial_at is None else self._dial_at - now
            self._state.set(_S.DISCONNECTED if self._dial_at is None else _S.RECONNECTING)
            polling = poll and not self._stay_down
            if polling:
                wait = min(wait, self._settings.reconnect_check_interval)
            with anyio.CancelScope() as scope:
                self._phase_scope = scope  # connect()/schedule_reconnect()/close() wake us
                await anyio.sleep(wait)
            if polling and not scope.cancel_called and self._dial_at is None:
                verdict = await self._callbacks.call(
                    "should_reconnect", self._settings.should_reconnect
                )
                delay = _reconnect_verdict(verdict)
                if delay is not None:
                    self._dial_at = anyio.current_time() + delay

    def _wake(self) -> None:
        if self._phase_scope is not None:
            self._phase_scope.cancel()

    # ------------------------------------------------------------------ operations

    async def send(self, data: Any) -> None:
        """Send ``data``: dict/list as JSON text, str as text, bytes as binary.

        Raises:
            WebSocketClosedError: not connected.
            TypeError: ``data`` has another type.
        """
        encoded = encode_outgoing(data)
        await self._send_encoded(encoded)

    async def _send_encoded(self, encoded: str | bytes) -> None:
        session = self._session
        if session is None or not self.state.can_send():
            raise WebSocketClosedError("not connected", code=1006)
        await session.conn.send(encoded)
        self._stats.record_sent(len(encoded))

    async def _send_control(self, message: object) -> None:
        # If the connection just went, the channel stays subscribed and is replayed on the next.
        with contextlib.suppress(WebSocketClosedError):
            await self._send_encoded(encode_outgoing(message))

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
        """Add channels (kept in order); sent now if connected (once on_connect has run, else
        by the replay that follows it), replayed after every connect."""
        new = [c for c in dict.fromkeys(channels) if c not in self._subscriptions]
        for channel in new:
            self._subscriptions[channel] = None
        announced = self._announced
        if self.is_connected and announced is not None:
            for channel in new:
                announced.add(channel)
                await self._send_control(
                    self._settings.subscription_protocol.subscribe_message(channel)
                )

    async def unsubscribe(self, *channels: str) -> None:
        """Remove channels; the unsubscribe message is sent now if connected."""
        removed = [c for c in dict.fromkeys(channels) if c in self._subscriptions]
        for channel in removed:
            del self._subscriptions[channel]
        announced = self._announced
        if self.is_connected and announced is not None:
            for channel in removed:
                if channel not in announced:
                    continue  # never sent on this connection
                announced.discard(channel)
                await self._send_control(
                    self._settings.subscription_protocol.unsubscribe_message(channel)
                )

    async def request_disconnect(
        self,
        reconnect_after: float | None = None,
        reason: DisconnectReason = DisconnectReason.USER_REQUESTED,
    ) -> None:
        """Close gracefully (1000) now; returns once disconnected, without waiting to reconnect.

        The manager reconnects after ``reconnect_after`` seconds, or when ``should_reconnect``
        allows, or stays DISCONNECTED until :meth:`connect`. No-op unless CONNECTED.
        """
        session = self._session
        if session is None or not self.is_connected:
            logger.warning("request_disconnect() ignored in state %s", self.state.name)
            return
        if reconnect_after is not None and not reconnect_after >= 0:
            raise ValueError("reconnect_after must be >= 0")
        self._reconnect_after = reconnect_after
        session.end(DisconnectEvent(reason, 1000, at=time.time()))
        await self._state.wait_for(lambda s: s is not _S.CONNECTED, None)

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
            while True:
                delay = _reconnect_verdict(
                    await self._callbacks.call("should_reconnect", predicate)
                )
                if delay is not None:
                    await anyio.sleep(delay)
                    return True
                await anyio.sleep(self._settings.reconnect_check_interval)
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
        """The URL with its secrets masked."""
        return str(self._url)

    @property
    def state(self) -> ConnectionState:
        return self._state.state

    @property
    def stats(self) -> WebSocketStats:
        return self._stats

    @property
    def is_connected(self) -> bool:
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
        return self.state in (_S.DISCONNECTED, _S.CLOSED)

    @property
    def is_recoverable(self) -> bool:
        return self.is_dead and not self._shutdown

    @property
    def is_shutdown(self) -> bool:
        return self._shutdown

    @property
    def latency(self) -> float | None:
        """The last keepalive round trip, in seconds (None before the first pong)."""
        return self._stats.latency

    @property
    def subprotocol(self) -> str | None:
        session = self._session
        return session.conn.subprotocol if session is not None else None

    @property
    def last_disconnect(self) -> DisconnectEvent | None:
        """Why the last connection ended: reason, close code and reason, error."""
        return self._last_disconnect

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
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


def _reconnect_verdict(verdict: object) -> float | None:
    """should_reconnect's answer: True → 0 (now); a number > 0 → that delay; else None (not yet).

    Checked by type, so ``1`` means one second and only ``True`` means now (SPEC, D19)."""
    if verdict is True:
        return 0.0
    if isinstance(verdict, int | float) and not isinstance(verdict, bool) and verdict > 0:
        return float(verdict)
    return None


def _is_fatal(error: WebSocketError) -> bool:
    """Errors no retry can fix: a 4xx refusal (but 408/429), a failed certificate check."""
    if isinstance(error, WebSocketHandshakeError):
        return not error.is_retryable
    if isinstance(error, WebSocketTLSError):
        return isinstance(error.last_error, ssl.SSLCertVerificationError)
    return not isinstance(error, WebSocketConnectionError | WebSocketTimeoutError)


def open_managed_websocket(
    url: str, **options: Unpack[ManagedWebSocketOptions]
) -> ManagedWebSocket:
    """``async with open_managed_websocket(url, **options) as ws:`` — see :class:`ManagedWebSocket`."""
    return ManagedWebSocket(url, **options)
