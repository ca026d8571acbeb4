"""Inbound control messages: consumed where they are read, never delivered.

Three kinds, all recognised in one place (:meth:`ControlMessages.consume`, called by the
session's delivery for every batch while any of them can arrive) and counted in
``stats.messages_consumed``, so that what was received is what was delivered, dropped,
superseded, deduplicated or consumed:

- the reply to our application heartbeat (:class:`AppHeartbeat`), only while one is awaited;
- the server's application-level pings (``ping_reply``), answered by the caller;
- answers to subscription requests and to ``request()`` (``_acks.Requests``), only while a
  request waits.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import anyio

from .._exceptions import WebSocketError
from .._heartbeat import Heartbeat
from .._messages import encode_outgoing

if TYPE_CHECKING:
    from ._session import Link, Session, Shared

__all__ = ["AppHeartbeat", "ControlMessages"]


class ControlMessages:
    __slots__ = ("_logger", "_ping_reply", "_requests", "_stats")

    def __init__(self, shared: Shared) -> None:
        self._ping_reply = shared.settings.ping_reply
        self._requests = shared.requests
        self._stats = shared.stats
        self._logger = shared.logger

    def active(self, link: Link) -> bool:
        """Whether a batch on ``link`` may hold control messages (else it is not looked at)."""
        heartbeat = link.heartbeat
        return (
            self._ping_reply is not None
            or self._requests.waiting
            or (heartbeat is not None and heartbeat.awaiting)
        )

    def consume(self, link: Link, batch: list[Any]) -> tuple[list[Any], list[str | bytes]]:
        """Split ``batch`` into what is delivered and the replies owed to the server's pings."""
        kept: list[Any] = []
        replies: list[str | bytes] = []
        heartbeat = link.heartbeat
        ping_reply = self._ping_reply
        requests = self._requests
        for message in batch:
            if (
                heartbeat is not None
                and heartbeat.awaiting
                and self._is(heartbeat.is_reply, message)
            ):
                heartbeat.answered()
            elif ping_reply is not None and self._is(ping_reply.is_ping, message):
                reply = self._reply_to(message)
                if reply is not None:
                    replies.append(reply)
            elif requests.waiting and requests.consume(link.conn, message):
                pass
            else:
                kept.append(message)
        self._stats.messages_consumed += len(batch) - len(kept)
        return kept, replies

    def _is(self, predicate: Any, message: Any) -> bool:
        try:
            return bool(predicate(message))
        except Exception:
            self._stats.callback_errors += 1
            self._logger.exception("! %s raised; the message is delivered", _name(predicate))
            return False

    def _reply_to(self, message: Any) -> str | bytes | None:
        assert self._ping_reply is not None
        try:
            return encode_outgoing(self._ping_reply.reply(message))
        except Exception:
            self._stats.callback_errors += 1
            self._logger.exception("! ping_reply's reply raised; the ping is not answered")
            return None


def _name(predicate: Any) -> str:
    return str(getattr(predicate, "__name__", "a control-message predicate"))


class AppHeartbeat:
    """The application heartbeat of one connection (``heartbeat=``): its message every
    ``interval``; its reply within ``timeout`` or the connection is dead (PING_TIMEOUT). The
    receive loop waits until :attr:`deadline` and calls :meth:`step`; whoever reads the reply
    (the loop, or a consumer in pull()) calls :meth:`answered` through :class:`ControlMessages`."""

    __slots__ = ("_heartbeat", "_link", "_sent_at", "_session", "awaiting", "deadline")

    def __init__(self, heartbeat: Heartbeat, session: Session, link: Link) -> None:
        self._heartbeat = heartbeat
        self._session = session
        self._link = link
        self.awaiting = False
        # As if one had been sent when the connection opened: the first goes out after interval.
        self._sent_at = anyio.current_time()
        self.deadline = self._sent_at + heartbeat.interval

    @property
    def is_reply(self) -> Any:
        return self._heartbeat.is_reply

    async def step(self) -> bool:
        """Once the deadline has passed: send the heartbeat, or judge the one in flight. False:
        the connection is dead. The deadline never moves earlier (a reply changes nothing the
        loop waits for): it is the next send or the reply's timeout, whichever comes first."""
        now = anyio.current_time()
        if now < self.deadline:
            return True
        heartbeat = self._heartbeat
        if self.awaiting:
            if now < self._sent_at + heartbeat.timeout:
                self.deadline = self._sent_at + heartbeat.timeout
                return True
            if self._session.inbox_blocked:
                # Nobody read while the queue was full: the reply may be unread. Ask again.
                self.awaiting = False
            else:
                self._session.shared.logger.warning(
                    "! no heartbeat reply within %g s: connection considered dead",
                    heartbeat.timeout,
                )
                return False
        if now < self._sent_at + heartbeat.interval:  # answered before its time: wait for it
            self.deadline = self._sent_at + heartbeat.interval
            return True
        await self._send(now)
        return True

    async def _send(self, now: float) -> None:
        session = self._session
        heartbeat = self._heartbeat
        try:
            message = encode_outgoing(heartbeat.next_message())
        except Exception:
            session.shared.stats.callback_errors += 1
            session.shared.logger.exception("! the heartbeat message could not be built")
            self._sent_at = now
            self.deadline = now + heartbeat.interval
            return
        self.awaiting = True
        self._sent_at = now
        self.deadline = now + min(heartbeat.interval, heartbeat.timeout)
        with (
            anyio.move_on_after(heartbeat.timeout),  # a send that cannot go out counts
            contextlib.suppress(WebSocketError),  # it ended; the next read says why
        ):
            await session.send(self._link, message)

    def delivered(self) -> None:
        """A delivery may have kept the loop from reading past the reply's time: no verdict
        from that wait, send the heartbeat again."""
        if self.awaiting and anyio.current_time() >= self._sent_at + self._heartbeat.timeout:
            self.awaiting = False

    def answered(self) -> None:
        self.awaiting = False
        self._session.shared.stats.latency = anyio.current_time() - self._sent_at
