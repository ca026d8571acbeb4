"""What the supervisor does after a connection ends: a pure decision (SPEC 5), no I/O.

- A proactive end (USER_REQUESTED, SCHEDULED, CALLBACK_TRIGGERED, CONNECTION_LIMIT) reconnects
  after ``reconnect_after``, else when ``should_reconnect`` allows, else not at all — whatever
  ``auto_reconnect`` says. Its attempt counter starts again: nothing failed.
- A reactive end reconnects through the backoff policy when ``auto_reconnect``; the counter grows
  unless the connection had been up for ``stable_connection_time``; a 1013 close sets a floor of
  ``server_unavailable_delay`` under the next delay. Without ``auto_reconnect`` it waits, polling
  ``should_reconnect`` if there is one.
- ``close()`` and ``kill()`` (``stay_down``) wait for ``connect()`` or ``schedule_reconnect()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._backoff import next_attempt
from .._models import DisconnectEvent
from .._settings import Settings

__all__ = ["TRY_AGAIN_LATER", "Plan", "plan_after_disconnect"]

#: RFC 6455 close code 1013 "Try Again Later" (IANA registry).
TRY_AGAIN_LATER = 1013


@dataclass(frozen=True, slots=True)
class Plan:
    reconnect: bool  # dial through the backoff policy now; else wait for permission
    attempt: int  # the reconnect attempt the next dial will be (0: no backoff delay)
    floor: float = 0.0  # minimum delay before that dial
    reconnect_after: float | None = None  # when waiting: dial after this many seconds
    poll_should_reconnect: bool = False  # when waiting: ask should_reconnect periodically


def plan_after_disconnect(
    event: DisconnectEvent,
    *,
    settings: Settings,
    attempt: int,
    connected_for: float,
    stay_down: bool,
    reconnect_after: float | None,
) -> Plan:
    can_poll = settings.should_reconnect is not None
    if stay_down:
        return Plan(reconnect=False, attempt=0)
    if event.reason.is_proactive:
        if reconnect_after is not None:
            return Plan(reconnect=False, attempt=0, reconnect_after=reconnect_after)
        return Plan(reconnect=False, attempt=0, poll_should_reconnect=can_poll)
    next_n = next_attempt(attempt, connected_for, settings.stable_connection_time)
    floor = settings.server_unavailable_delay if event.code == TRY_AGAIN_LATER else 0.0
    if settings.auto_reconnect:
        return Plan(reconnect=True, attempt=next_n, floor=floor)
    return Plan(reconnect=False, attempt=0, poll_should_reconnect=can_poll)
