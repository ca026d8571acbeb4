"""The supervisor: one loop that dials, serves, decides and waits (SPEC section 5).

Shape. ``run()`` (in ``_managed.py``) owns one task group whose only long-lived task is
:meth:`Supervisor._supervise`, a loop (never recursion): dial through the backoff policy → serve
the connection in a :class:`Session` (its own cancel scope with the receive, keepalive and check
loops) → decide with :func:`plan_after_disconnect` → wait or dial again. Public operations never
poll flags: they set the intent (``_stay_down``, ``_dial_at``, ``_reconnect_after``) and cancel the
scope of whatever the supervisor is doing now (``_phase_scope``) or end the session.
``shutdown()`` and ``force_close()`` cancel the whole task group, so no reconnect can follow them.

Make-before-break rotation (:meth:`Supervisor._rotate`) opens a second connection inside the
current session and switches to it once warm; see ``_session.py`` and ``_rotation.py``.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from .._alerts import AlertThrottle
from .._backoff import backoff_delay, exhausted
from .._connection import WebSocketConnection
from .._events import (
    Connected,
    ConnectFailed,
    Connecting,
    Disconnected,
    EventHub,
    EventListener,
    MessagesDropped,
    ReconnectScheduled,
    RotationCompleted,
    RotationFailed,
    RotationStarted,
    SubscriptionFailed,
    SubscriptionsReplayed,
)
from .._exceptions import (
    WebSocketClosedError,
    WebSocketConnectionError,
    WebSocketError,
    WebSocketHandshakeError,
    WebSocketProxyError,
    WebSocketReconnectError,
    WebSocketSubscriptionError,
    WebSocketTimeoutError,
    WebSocketTLSError,
    _plural,
    describe,
    describe_close,
)
from .._handshake import open_websocket_connection
from .._ledger import OutageLedger
from .._messages import encode_outgoing
from .._models import (
    ConnectionState,
    DisconnectEvent,
    DisconnectReason,
    ReconnectStrategy,
    WebSocketStats,
)
from .._redact import mask_urls_in
from .._settings import (
    ShouldReconnect,
    UrlProvider,
    effective_max_subscriptions,
    resolve_settings,
)
from .._subscriptions import plan_requests
from ._acks import PendingRequest, Requests
from ._callbacks import CallbackRunner
from ._critical import CriticalSections
from ._endpoint import Endpoint
from ._inbox import Inbox
from ._plan import plan_after_disconnect
from ._session import Link, Session, Shared
from ._state import StateMachine

__all__ = ["Supervisor"]

logger = logging.getLogger("managed_websocket")

_S = ConnectionState


class Supervisor:
    """The connection supervisor; :class:`ManagedWebSocket` adds the public operations."""

    # Slots: with more than 30 attributes an instance ``__dict__`` no longer shares its keys
    # with the class (CPython's limit) and costs ~1.6 KiB per manager. ManagedWebSocket adds no
    # slots, so its instances still have a ``__dict__`` (e.g. for monkeypatching in tests).
    __slots__ = (
        "_announced",
        "_callbacks",
        "_critical",
        "_dial_at",
        "_disconnect_alerts",
        "_drop_alerts",
        "_dropped_since_alert",
        "_ended_in_critical",
        "_endpoint",
        "_event_callback",
        "_events",
        "_fatal",
        "_flushing",
        "_handshake_time",
        "_inbox",
        "_last_alert_reason",
        "_last_disconnect",
        "_ledger",
        "_owner_group",
        "_phase_scope",
        "_reconnect_after",
        "_requests",
        "_rotating",
        "_run_scope",
        "_running",
        "_session",
        "_settings",
        "_shutdown",
        "_state",
        "_stats",
        "_stay_down",
        "_subscriptions",
        "_task_status",
    )

    def __init__(self, url: str | UrlProvider | None, options: Mapping[str, Any]) -> None:
        urls = options.get("urls")
        self._settings = resolve_settings({k: v for k, v in options.items() if k != "urls"})
        if (url is None) == (urls is None):
            raise TypeError("give either url or urls=[...] (a failover list), not both")
        if isinstance(urls, str):
            raise TypeError("urls must be a list of str, not a str")
        target: str | UrlProvider | Any = url if url is not None else urls
        self._endpoint = Endpoint(target, self._settings.headers)
        self._stats = WebSocketStats(clock=anyio.current_time)
        self._callbacks = CallbackRunner(self._stats, logger)
        self._state = StateMachine(logger, str(self._endpoint))
        self._inbox = Inbox(self._settings.queue_size, self._settings.overflow)
        self._subscriptions: dict[str, None] = {}
        # Channels subscribed on the current connection; None until on_connect has returned
        # (until then subscribe() leaves the sending to the replay, so nothing goes out twice).
        self._announced: set[str] | None = None
        self._requests = Requests(self._settings.subscription_protocol, self._stats, logger)
        self._session: Session | None = None
        self._critical = CriticalSections()
        self._handshake_time: float | None = None  # how long the last dial took (TCP+TLS+upgrade)
        self._events = EventHub()
        # on_event: a listener registered now, so it sees the first Connecting and Connected
        # too; run() drains it into the callback (see _deliver_events).
        self._event_callback: EventListener | None = (
            self._events.listen(ON_EVENT_BUFFER) if self._settings.on_event is not None else None
        )
        self._ledger = OutageLedger()
        self._rotating = False
        self._ended_in_critical = False  # a critical section was open when the last one ended
        self._last_disconnect: DisconnectEvent | None = None
        self._disconnect_alerts = AlertThrottle(self._settings.disconnect_alert_interval)
        self._drop_alerts = AlertThrottle(self._settings.disconnect_alert_interval)
        self._dropped_since_alert = 0
        self._last_alert_reason = DisconnectReason.NETWORK_ERROR  # for a held disconnect alert
        self._flushing = False  # a session's task reports held alerts (_flush_held_alerts)
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
        # run()'s task_status until the first connection is fully open (then: started()).
        self._task_status: anyio.abc.TaskStatus[None] | None = None
        self._owner_group: anyio.abc.TaskGroup | None = None

    def _report_started(self) -> None:
        status, self._task_status = self._task_status, None
        if status is not None:
            status.started()

    # ------------------------------------------------------------------ supervisor

    async def _supervise(self) -> None:
        try:
            await self._supervise_loop()
        except WebSocketError as exc:
            self._fatal = exc
            logger.error("! %s failed: %s", self._endpoint, describe(exc))
        finally:
            self._shutdown = True
            self._session = None
            self._state.set(_S.CLOSED)
            self._inbox.close(self._fatal)
            self._events.close()
            if self._run_scope is not None:
                self._run_scope.cancel()

    async def _supervise_loop(self) -> None:
        attempt, floor, waited = 0, 0.0, 0.0
        while True:
            # The attempt that connected: a short-lived connection after it counts on from there.
            conn, attempt = await self._dial(attempt, floor, waited)
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
                if self._endpoint.failover:
                    self._endpoint.dropped(
                        anyio.current_time(),
                        self._settings,
                        stable=connected_for >= self._settings.stable_connection_time,
                        reactive=event.reason.is_reactive,
                        floor=floor,
                    )
                if plan.reconnect_after is not None:
                    self._dial_at = anyio.current_time() + plan.reconnect_after
                plan_wait, poll = not plan.reconnect, plan.poll_should_reconnect
                self._state.set(_S.RECONNECTING if plan.reconnect else _S.DISCONNECTED)
                await self._after_disconnect(event)
            waited = 0.0
            if plan_wait:
                waited = await self._wait_for_permission(poll)
                attempt, floor = 0, 0.0

    async def _dial(
        self, attempt: int, floor: float, waited: float = 0.0
    ) -> tuple[WebSocketConnection | None, int]:
        """Dial until a connection opens, through the backoff policy; return it (None if
        interrupted) and the attempt it was. ``waited``: the planned pause before a first
        attempt (``reconnect_after``, ``schedule_reconnect``, ``should_reconnect``)."""
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
                        "= reconnecting to %s in %.2f s (attempt %d)",
                        self._endpoint,
                        delay,
                        attempt,
                    )
                    self._events.publish(ReconnectScheduled(delay=delay, attempt=attempt))
                    await self._sleep(delay)
                    self._stats.reconnect_attempts += 1
                else:
                    delay = waited
                    if self._state.state is not _S.RECONNECTING:
                        self._state.set(_S.CONNECTING)
                self._events.publish(Connecting(attempt=attempt, delay=delay))
                try:
                    dialled = anyio.current_time()
                    conn = await self._open()
                    self._handshake_time = anyio.current_time() - dialled
                except WebSocketError as exc:
                    fatal = _is_fatal(exc, self._endpoint.refreshes_credentials)
                    self._events.publish(
                        ConnectFailed(
                            attempt=attempt,
                            error=mask_urls_in(describe(exc)),
                            error_type=type(exc).__name__,
                            url=str(self._endpoint),
                            fatal=fatal,
                        )
                    )
                    if fatal:
                        raise
                    last_error = exc
                    # The URL once (describe() leaves it out); the error itself for handlers.
                    logger.warning(
                        "! connecting to %s failed: %s",
                        self._endpoint,
                        describe(exc),
                        extra={"error": exc},
                    )
                    floor = (
                        exc.retry_after or 0.0 if isinstance(exc, WebSocketHandshakeError) else 0.0
                    )
                    self._endpoint.failed(anyio.current_time(), self._settings, floor)
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
        # The providers, before every dial; or the failover endpoint whose backoff is over.
        target, headers = await self._endpoint.resolve(anyio.current_time())
        return await open_websocket_connection(
            target,
            headers=headers,
            subprotocols=s.subprotocols,
            ssl_context=s.ssl_context,
            connection_timeout=s.connection_timeout,
            close_timeout=s.close_timeout,
            max_message_size=s.max_message_size,
            compression=s.compression,
            proxy=s.proxy,
        )

    async def _delay_before(self, attempt: int, floor: float) -> float:
        s = self._settings
        if (
            s.reconnect_strategy is ReconnectStrategy.CALLBACK_CONTROLLED
            and s.should_reconnect is not None
        ):
            return max(await self._ask_should_reconnect(s.should_reconnect), floor)
        if self._endpoint.failover:
            return self._endpoint.wait(anyio.current_time())  # each endpoint has its own backoff
        return backoff_delay(s, attempt, floor=floor)

    async def _ask_should_reconnect(self, predicate: ShouldReconnect) -> float:
        """Ask ``predicate`` every reconnect_check_interval until it allows a reconnect: True →
        0 (now), a number > 0 → that delay. CALLBACK_CONTROLLED and wait_for_reconnect_window."""
        while True:
            verdict = await self._callbacks.call("should_reconnect", predicate)
            delay = _reconnect_verdict(verdict)
            if delay is not None:
                return delay
            await self._sleep(self._settings.reconnect_check_interval)

    async def _serve(self, conn: WebSocketConnection) -> tuple[DisconnectEvent, float]:
        session = Session(conn, self._shared(), self._inbox)
        self._session = session
        self._announced = None
        self._phase_scope = None
        self._state.set(_S.CONNECTED)
        self._stats.record_connect()
        started = anyio.current_time()
        logger.info("= connected to %s", self._endpoint)
        self._ledger.restored(started, wall=time.time())
        self._events.publish(Connected(subprotocol=conn.subprotocol, latency=self._handshake_time))
        try:
            event = await session.run(self._on_open)
        finally:
            self._session = None
            ending = session.ending or DisconnectEvent(DisconnectReason.NETWORK_ERROR)
            self._stats.record_disconnect(ending.reason)
            ended_at = session.ended_at if session.ended_at is not None else anyio.current_time()
            self._ended_in_critical = session.ended_in_critical or self._critical.active
            if not self._shutdown:  # a terminal close is the end, not an outage
                self._ledger.lost(ended_at, ending.reason, ending.code, wall=_wall(ended_at))
            if session.ending is not None and self._shutdown:
                # shutdown()/force_close() cancel the supervisor before its loop reports the
                # disconnect: report it here, so on_disconnect runs once per disconnect.
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(self._settings.close_timeout),
                ):
                    await self._after_disconnect(session.ending)
        return event, anyio.current_time() - started

    def _shared(self) -> Shared:
        return Shared(
            settings=self._settings,
            stats=self._stats,
            callbacks=self._callbacks,
            critical=self._critical,
            events=self._events,
            ledger=self._ledger,
            requests=self._requests,
            on_dropped=self._on_dropped,
            rotate=self._rotate,
            logger=logger,
            closes_gracefully_when_cancelled=self._closes_gracefully_when_cancelled,
        )

    def _closes_gracefully_when_cancelled(self) -> bool:
        return self._owner_group is not None

    async def _on_open(self, link: Link) -> None:
        await self._callbacks.call("on_connect", self._settings.on_connect)
        session = self._session
        assert session is not None
        # From here subscribe() sends what the replay has not (the replay skips what it sent).
        announced: set[str] = set()
        self._announced = announced
        if self._held_deadline() is not None:
            self._alerts_held()  # held between connections: this session's task reports them
        await self._replay_subscriptions(session, link, announced)
        # Startup (async with / tg.start(ws.run)) returns once the connection is fully open:
        # on_connect has run and the subscriptions are replayed, on both backends alike.
        self._report_started()

    # ------------------------------------------------------------------ subscriptions

    async def _replay_subscriptions(
        self, session: Session, link: Link, announced: set[str]
    ) -> None:
        """Send, in order and batched, every subscription not yet ``announced`` on ``link``
        (and those subscribe()d meanwhile); unsubscribe what ``announced`` has but the set no
        longer has (after a rotation's switch). Answers are awaited in a task of the session:
        a refusal is an alert and a :class:`SubscriptionFailed`, never a silent loss."""
        sent: list[tuple[list[str], PendingRequest | None]] = []
        failures: list[WebSocketSubscriptionError] = []
        try:
            while todo := [c for c in self._subscriptions if c not in announced]:
                announced.update(todo)
                sent += await self._send_requests(link, todo, subscribe=True)
            if extra := [c for c in announced if c not in self._subscriptions]:
                announced.difference_update(extra)
                await self._send_requests(link, extra, subscribe=False)
        except WebSocketSubscriptionError as exc:  # the protocol could not build a request
            failures.append(exc)
        if not (sent or failures):
            return
        if any(pending is not None for _, pending in sent):
            session.spawn(self._finish_replay, sent, announced, failures)
        else:
            await self._finish_replay(sent, announced, failures)

    async def _finish_replay(
        self,
        sent: list[tuple[list[str], PendingRequest | None]],
        announced: set[str],
        failures: list[WebSocketSubscriptionError],
    ) -> None:
        failures = failures + await self._await_answers(sent, "subscribe")
        failed = 0
        for error in failures:
            self._drop_channels(error.channels, announced)
            failed += len(error.channels)
            logger.warning("! resubscribing on %s: %s", self._endpoint, error)
            self._events.publish(
                SubscriptionFailed(channels=error.channels, code=error.code, reason=error.reason)
            )
            await self._callbacks.call(
                "on_alert",
                self._settings.on_alert,
                "subscription_failed",
                str(error),
                {"channels": list(error.channels), "code": error.code, "reason": error.reason},
            )
        channels = sum(len(batch) for batch, _ in sent)
        logger.info("= resubscribed %d channels on %s", channels - failed, self._endpoint)
        self._events.publish(
            SubscriptionsReplayed(channels=channels, requests=len(sent), failed=failed)
        )

    def _check_subscribable(self, channels: list[str]) -> None:
        """Raise before anything is sent if ``channels`` cannot be subscribed."""
        limit = effective_max_subscriptions(self._settings)
        if limit is not None and len(self._subscriptions) + len(channels) > limit:
            raise WebSocketSubscriptionError(
                channels,
                f"max_subscriptions={limit} would be exceeded "
                f"({len(self._subscriptions)} subscribed, {len(channels)} more asked)",
            )
        try:
            plan_requests(self._settings.subscription_protocol, channels)
        except ValueError as exc:
            raise WebSocketSubscriptionError(channels, str(exc)) from None

    async def _send_requests(
        self, link: Link, channels: list[str], *, subscribe: bool
    ) -> list[tuple[list[str], PendingRequest | None]]:
        """Send (un)subscribe requests for ``channels`` on ``link``, batched as the protocol
        allows, within send_rate_limit. Stops quietly if the connection is gone: the channels
        stay subscribed and the next connection replays them."""
        protocol = self._settings.subscription_protocol
        build = protocol.subscribe_request if subscribe else protocol.unsubscribe_request
        operation = "subscribe" if subscribe else "unsubscribe"
        sent: list[tuple[list[str], PendingRequest | None]] = []
        for batch in plan_requests(protocol, channels, subscribe=subscribe):
            pending = self._requests.open(link.conn, batch) if protocol.acknowledged else None
            request_id = pending.request_id if pending is not None else self._requests.next_id()
            try:
                encoded = encode_outgoing(build(batch, request_id))
            except Exception as exc:
                if pending is not None:
                    self._requests.abandon(pending)
                self._stats.callback_errors += 1
                raise WebSocketSubscriptionError(
                    batch,
                    f"{type(protocol).__name__} could not build the request: {exc!r}",
                    operation=operation,
                ) from exc
            try:
                await self._send_encoded(encoded, link)
            except WebSocketClosedError:
                self._requests.forget(link.conn)
                break
            sent.append((batch, pending))
        return sent

    async def _await_answers(
        self, sent: list[tuple[list[str], PendingRequest | None]], operation: str
    ) -> list[WebSocketSubscriptionError]:
        """Wait (at most ack_timeout) for the answers to ``sent``; return the failures."""
        waiting = [pending for _, pending in sent if pending is not None]
        timeout = self._settings.ack_timeout
        try:
            with anyio.move_on_after(timeout):
                for request in waiting:
                    await request.done.wait()
        finally:
            for request in waiting:
                if not request.done.is_set():
                    self._requests.abandon(request)  # a late answer is delivered
        failures = []
        for batch, pending in sent:
            if pending is None or pending.lost:
                continue  # not acknowledged by this protocol, or replayed on the next connection
            if not pending.done.is_set():
                reason = f"no answer within ack_timeout={timeout:g} s"
                failures.append(WebSocketSubscriptionError(batch, reason, operation=operation))
            elif pending.reply is not None:
                failures.append(
                    WebSocketSubscriptionError(
                        batch,
                        pending.reply.reason or "refused by the server",
                        code=pending.reply.code,
                        operation=operation,
                    )
                )
        return failures

    def _drop_channels(self, channels: tuple[str, ...], announced: set[str]) -> None:
        """Channels the server refused (or never acknowledged) are no longer subscribed."""
        for channel in channels:
            self._subscriptions.pop(channel, None)
            announced.discard(channel)

    async def _after_disconnect(self, event: DisconnectEvent) -> None:
        if event is self._last_disconnect:
            return  # already reported (a shutdown racing the loop)
        self._last_disconnect = event
        level = logging.INFO if event.reason.is_proactive else logging.WARNING
        # The server's close reason says why it closed: it belongs on this line (quoted, masked).
        logger.log(
            level,
            "= disconnected from %s: %s (%s)",
            self._endpoint,
            event.reason.name,
            describe_close(event.code, event.close_reason),
        )
        self._events.publish(
            Disconnected(
                reason=event.reason,
                code=event.code,
                close_reason=_masked_reason(event.close_reason),
                in_critical_section=self._ended_in_critical and event.reason.is_reactive,
            )
        )
        await self._callbacks.call("on_disconnect", self._settings.on_disconnect, event.reason)
        if self._shutdown:
            return  # the owner closed us: nothing to alert about
        self._last_alert_reason = event.reason
        count = self._disconnect_alerts.record(anyio.current_time())
        if count is None:
            self._alerts_held()
        else:
            await self._disconnect_alert(count)

    async def _disconnect_alert(self, count: int) -> None:
        await self._callbacks.call(
            "on_disconnect_alert",
            self._settings.on_disconnect_alert,
            self._last_alert_reason,
            count,
        )

    async def _on_dropped(self, count: int) -> None:
        self._stats.messages_dropped += count
        self._dropped_since_alert += count
        if self._drop_alerts.record(anyio.current_time()) is None:
            self._alerts_held()
            return
        await self._drop_alert()

    def _alerts_held(self) -> None:
        """A throttled alert is pending: report it once its interval has passed (B12: the tail
        of a burst was only reported at the next event, if one ever came). While connected, a
        task of the session does (started now, or by :meth:`_on_open` for what was held
        between connections); between connections, the supervisor's own waits do
        (:meth:`_sleep`). So neither costs a task, nor a task group, while nothing is held."""
        session = self._session
        if not self._flushing and session is not None and session.can_spawn:
            self._flushing = True
            session.spawn(self._flush_held_alerts)

    def _held_deadline(self) -> float | None:
        """When the next held alert is due, or None if none is held."""
        deadlines = [
            deadline
            for deadline in (
                self._disconnect_alerts.flush_deadline(),
                self._drop_alerts.flush_deadline(),
            )
            if deadline is not None
        ]
        return min(deadlines) if deadlines else None

    async def _flush_held_alerts(self) -> None:
        """A session's task: report held alerts as they fall due, until none is held."""
        try:
            while (deadline := self._held_deadline()) is not None:
                await anyio.sleep_until(deadline)
                # A session that ends meanwhile waits for the callbacks (at most close_timeout)
                # rather than cutting them short: the counts are taken.
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(self._settings.close_timeout),
                ):
                    await self._flush_due()
        finally:
            self._flushing = False

    async def _flush_due(self) -> None:
        now = anyio.current_time()
        count = self._disconnect_alerts.flush(now)
        if count is not None:
            await self._disconnect_alert(count)
        if self._drop_alerts.flush(now) is not None:
            await self._drop_alert()

    async def _sleep(self, delay: float) -> None:
        """``anyio.sleep(delay)`` for the supervisor's waits between connections, reporting
        the alerts held meanwhile as they fall due (no session's task does then)."""
        end = anyio.current_time() + delay
        while (
            not self._flushing
            and (deadline := self._held_deadline()) is not None
            and deadline < end
        ):
            await anyio.sleep_until(deadline)
            await self._flush_due()
        await anyio.sleep_until(end)

    async def _drop_alert(self) -> None:
        dropped, self._dropped_since_alert = self._dropped_since_alert, 0
        self._events.publish(MessagesDropped(count=dropped))
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

    async def _wait_for_permission(self, poll: bool) -> float:
        """Wait in DISCONNECTED (or RECONNECTING while a dial is scheduled) until allowed to dial;
        return how long the last scheduled pause was. Each scheduled dial is announced with a
        ReconnectScheduled event, so a listener can tell a planned pause from a redial."""
        announced: float | None = None
        scheduled = 0.0
        while True:
            now = anyio.current_time()
            if self._dial_at is not None and self._dial_at <= now:
                on_schedule = self._dial_at == announced  # not connect(), which dials now
                self._dial_at = None
                return scheduled if on_schedule else 0.0
            if self._dial_at is not None and self._dial_at != announced:
                announced, scheduled = self._dial_at, self._dial_at - now
                logger.info("= reconnecting to %s in %.2f s", self._endpoint, scheduled)
                self._events.publish(ReconnectScheduled(delay=scheduled, attempt=0))
            wait = float("inf") if self._dial_at is None else self._dial_at - now
            self._state.set(_S.DISCONNECTED if self._dial_at is None else _S.RECONNECTING)
            polling = poll and not self._stay_down
            if polling:
                wait = min(wait, self._settings.reconnect_check_interval)
            with anyio.CancelScope() as scope:
                self._phase_scope = scope  # connect()/schedule_reconnect()/close() wake us
                await self._sleep(wait)
            if polling and not scope.cancel_called and self._dial_at is None:
                verdict = await self._callbacks.call(
                    "should_reconnect", self._settings.should_reconnect
                )
                delay = _reconnect_verdict(verdict)
                if delay is not None:
                    self._dial_at = anyio.current_time() + delay

    # ------------------------------------------------------------------ rotation

    async def _rotate(self, reason: DisconnectReason) -> bool:
        """Make-before-break: open a second connection, replay the subscriptions on it, wait until
        it is warm, switch the consumer over, close the old one with 1000. False if it failed
        (the old connection stays)."""
        session = self._session
        if session is None or self._rotating or not self._state.state.can_send():
            return False
        self._rotating = True
        max_defer = self._settings.max_defer
        deadline = None if max_defer is None else anyio.current_time() + max_defer
        try:
            forced = await session.wait_for_critical_sections(reason, deadline)
            return await self._rotate_session(session, reason, deadline, forced=forced)
        finally:
            self._rotating = False

    async def _rotate_session(
        self, session: Session, reason: DisconnectReason, deadline: float | None, *, forced: bool
    ) -> bool:
        logger.info("= rotating %s (%s)", self._endpoint, reason.name)
        self._events.publish(RotationStarted(reason=reason))
        started, started_at = anyio.current_time(), time.time()
        session.begin_rotation()  # before the dial: the server may send as soon as it accepts
        try:
            conn = await self._open()
        except WebSocketError as exc:
            session.abandon_rotation()
            return self._rotation_failed(f"dial failed: {exc}")
        except BaseException:
            session.abandon_rotation()
            raise
        if session.ending is not None:  # the connection ended while we dialled
            session.abandon_rotation()
            with anyio.CancelScope(shield=True):
                await conn.abort()
            return self._rotation_failed("the current connection ended meanwhile")
        link = session.add_candidate(conn)
        announced: set[str] = set()
        try:
            await self._callbacks.call("on_connect", self._settings.on_connect)
            await self._replay_subscriptions(session, link, announced)
            with anyio.move_on_after(self._settings.rotation_timeout):
                await link.warm.wait()
            ready = link.warm.is_set() and link.failure is None and session.ending is None
            if ready and not forced:
                # The switch closes the old connection: a section opened meanwhile holds it too
                # (max_defer bounds both waits together).
                await session.wait_for_critical_sections(reason, deadline)
        except BaseException:
            await session.discard(link)
            raise
        if not link.warm.is_set() or link.failure is not None or session.ending is not None:
            # Say why before discarding: the aborted candidate's reader may report a failure.
            if link.warm.is_set():
                why = "new connection failed"
            elif link.hot:  # with dedup_key: the old one never delivered what the new one got
                why = "new connection did not overlap the current one within rotation_timeout"
            else:
                why = "new connection not warm within rotation_timeout"
            await session.discard(link)
            return self._rotation_failed(why)
        switched = await session.switch_to(link, self._settings.rotation_timeout)
        if switched is None:
            await session.discard(link)
            return self._rotation_failed(
                "the current connection's delivery did not finish within rotation_timeout "
                "(the queue is full and nobody reads)"
            )
        staged, duplicates = switched
        self._announced = announced
        # subscribe()/unsubscribe() during the rotation went to the old connection only.
        await self._replay_subscriptions(session, link, announced)
        self._stats.record_connect()
        self._stats.rotations += 1
        self._stats.overlap_messages += staged
        self._ledger.rotated(
            started, anyio.current_time(), reason, started_at=started_at, ended_at=time.time()
        )
        self._events.publish(
            RotationCompleted(overlap_messages=staged, duplicates_dropped=duplicates)
        )
        logger.info(
            "= rotated %s: %s, %s dropped",
            self._endpoint,
            _plural(staged, "overlap message"),
            _plural(duplicates, "duplicate"),
        )
        return True

    async def _deliver_events(self, listener: EventListener) -> None:
        """Hand every event to the ``on_event`` callback, in order, until the hub closes (run()
        gives this ``close_timeout`` after the supervisor ends). A callback that raises is
        logged and counted in ``stats.callback_errors``; one slower than the events loses what
        does not fit in its buffer, and that is logged too."""
        reported = 0
        async for event in listener:
            if listener.dropped > reported:
                logger.warning(
                    "! on_event callback fell behind: %d events dropped",
                    listener.dropped - reported,
                )
                reported = listener.dropped
            await self._callbacks.call("on_event", self._settings.on_event, event)

    def _rotation_failed(self, why: str) -> bool:
        self._stats.rotations_failed += 1
        logger.warning(
            "! rotation of %s failed: %s; keeping the current connection", self._endpoint, why
        )
        self._events.publish(RotationFailed(error=why))
        return False

    def _wake(self) -> None:
        if self._phase_scope is not None:
            self._phase_scope.cancel()

    async def _send_encoded(self, encoded: str | bytes, link: Link | None = None) -> None:
        session = self._session
        if session is None or not self._state.state.can_send():
            raise WebSocketClosedError("not connected", code=1006)
        await session.send(link or session.primary, encoded)


def _reconnect_verdict(verdict: object) -> float | None:
    """should_reconnect's answer: True → 0 (now); a number > 0 → that delay; else None (not yet).

    Checked by type, so ``1`` means one second and only ``True`` means now (SPEC, D19)."""
    if verdict is True:
        return 0.0
    if isinstance(verdict, int | float) and not isinstance(verdict, bool) and verdict > 0:
        return float(verdict)
    return None


def _is_fatal(error: WebSocketError, refreshes_credentials: bool = False) -> bool:
    """Errors no retry can fix: a 4xx refusal (but 408/429), a failed certificate check. With a
    url or headers provider, 401 and 403 are retried: the next dial brings fresh credentials."""
    if isinstance(error, WebSocketProxyError):
        return not error.is_retryable  # a provider's fresh credentials are not the proxy's
    if isinstance(error, WebSocketHandshakeError):
        if refreshes_credentials and error.status_code in (401, 403):
            return False
        return not error.is_retryable
    if isinstance(error, WebSocketTLSError):
        return isinstance(error.last_error, ssl.SSLCertVerificationError)
    return not isinstance(error, WebSocketConnectionError | WebSocketTimeoutError)


#: Events the on_event callback may fall behind by before the oldest undelivered are dropped.
ON_EVENT_BUFFER = 1024


def _wall(loop_time: float) -> float:
    """The wall-clock time (``time.time()``) of an instant on the event loop's clock."""
    return time.time() - (anyio.current_time() - loop_time)


def _masked_reason(reason: str) -> str:
    """A peer's close reason may carry secrets: events keep only its length."""
    return f"<{len(reason)} characters>" if reason else ""
