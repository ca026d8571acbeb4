"""One live connection and the tasks that serve it, all inside one cancel scope.

A session runs, in its own task group: the receive loop (socket → decode → ``on_message`` →
inbox), the keepalive loop and the ``should_disconnect`` checks. Whoever decides the connection is
over — one of those loops, or a public operation such as ``close()`` — calls :meth:`Session.end`
with a :class:`DisconnectEvent`: the first event wins and the scope is cancelled, so nothing of
this connection can outlive it. :meth:`Session.run` then closes the socket (gracefully for a
proactive end, at once otherwise), shielded, and returns the event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .._connection import WebSocketConnection
from .._exceptions import (
    WebSocketAbnormalClosureError,
    WebSocketClosedError,
    WebSocketError,
    WebSocketProtocolError,
)
from .._models import DisconnectEvent, DisconnectReason, WebSocketStats
from .._settings import Settings
from ._callbacks import CallbackRunner
from ._inbox import Inbox

__all__ = ["Session", "event_for_error"]


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


class Session:
    def __init__(
        self,
        conn: WebSocketConnection,
        *,
        settings: Settings,
        stats: WebSocketStats,
        inbox: Inbox,
        callbacks: CallbackRunner,
        on_dropped: Callable[[int], Awaitable[None]],
        logger: logging.Logger,
    ) -> None:
        self.conn = conn
        self._settings = settings
        self._stats = stats
        self._inbox = inbox
        self._callbacks = callbacks
        self._on_dropped = on_dropped
        self._logger = logger
        self._scope: anyio.CancelScope | None = None
        self.ending: DisconnectEvent | None = None

    def end(self, event: DisconnectEvent) -> None:
        """End this connection for ``event``'s reason (the first call wins)."""
        if self.ending is None:
            self.ending = event
        if self._scope is not None:
            self._scope.cancel()

    async def run(self, on_open: Callable[[], Awaitable[None]]) -> DisconnectEvent:
        """Serve the connection until something ends it; return why. The socket is closed after."""
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                if self.ending is not None:  # ended before it started (e.g. close() raced us)
                    tg.cancel_scope.cancel()
                tg.start_soon(self._receive_loop)
                if self._settings.ping_interval is not None:
                    tg.start_soon(self._keepalive, self._settings.ping_interval)
                if self._settings.should_disconnect is not None:
                    tg.start_soon(self._disconnect_checks)
                try:
                    await on_open()
                except WebSocketError as exc:
                    # The connection died during on_connect/resubscribe; the reader reports why.
                    self._logger.debug("! connection failed while opening: %s", exc)
        finally:
            await self._close_socket()
        if self.ending is None:
            self.ending = DisconnectEvent(DisconnectReason.NETWORK_ERROR, at=time.time())
        return self.ending

    async def _close_socket(self) -> None:
        with anyio.CancelScope(shield=True):
            ending = self.ending
            if ending is not None and ending.reason.is_proactive:
                with anyio.move_on_after(self._settings.close_timeout):
                    await self.conn.aclose(1000)
            await self.conn.abort()  # a no-op once closed; otherwise the socket goes now

    # The loops

    async def _receive_loop(self) -> None:
        conn = self.conn
        try:
            while True:
                await self._deliver(await conn.receive_batch())
        except WebSocketError as exc:
            self.end(event_for_error(exc))

    async def _deliver(self, batch: list[Any]) -> None:
        self._stats.record_received(len(batch), sum(map(len, batch)))
        decode = self._settings.decode
        if decode is not None:
            batch = self._decode(decode, batch)
        on_message = self._settings.on_message
        if on_message is not None:
            for message in batch:
                await self._callbacks.call("on_message", on_message, message)
        dropped = await self._inbox.put_batch(batch)
        if dropped:
            await self._on_dropped(dropped)

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
            self._stats.callback_errors += 1
            self._logger.exception("! decode raised; delivering the raw message")
            return message

    async def _keepalive(self, interval: float) -> None:
        timeout = self._settings.ping_timeout
        while True:
            await anyio.sleep(interval)
            if self._inbox.blocked:
                # The reader is waiting for a slow consumer, not for the network: the data it
                # is holding proves the peer is alive, and a pong could not be read anyway.
                continue
            received_before = self.conn.bytes_received
            with anyio.move_on_after(timeout):
                try:
                    self._stats.latency = await self.conn.ping()
                except WebSocketError:
                    return  # the connection ended; the receive loop reports why
                self._logger.debug("%% pong after %.1f ms", self._stats.latency * 1000)
                continue
            if self.conn.bytes_received > received_before or self._inbox.blocked:
                continue  # any inbound traffic counts as liveness (SPEC 5)
            self._logger.warning("! no pong within %g s: connection considered dead", timeout)
            self.end(DisconnectEvent(DisconnectReason.PING_TIMEOUT, at=time.time()))
            return

    async def _disconnect_checks(self) -> None:
        should_disconnect = self._settings.should_disconnect
        while True:
            await anyio.sleep(self._settings.disconnect_check_interval)
            if await self._callbacks.call("should_disconnect", should_disconnect):
                self.end(DisconnectEvent(DisconnectReason.CALLBACK_TRIGGERED, at=time.time()))
                return
