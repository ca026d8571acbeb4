"""What the supervisor does after a disconnect: the pure decision table (SPEC section 5)."""

from __future__ import annotations

import pytest

from managed_websocket import DisconnectEvent, DisconnectReason
from managed_websocket._manager._plan import Plan, plan_after_disconnect
from managed_websocket._settings import Settings

R = DisconnectReason
REACTIVE = [R.SERVER_CLOSED, R.NETWORK_ERROR, R.PING_TIMEOUT, R.PROTOCOL_ERROR, R.KILLED]
PROACTIVE = [R.USER_REQUESTED, R.SCHEDULED, R.CALLBACK_TRIGGERED, R.CONNECTION_LIMIT]


def plan(
    reason: DisconnectReason,
    *,
    code: int | None = None,
    attempt: int = 0,
    connected_for: float = 1.0,
    stay_down: bool = False,
    reconnect_after: float | None = None,
    **settings: object,
) -> Plan:
    return plan_after_disconnect(
        DisconnectEvent(reason, code),
        settings=Settings(**settings),  # type: ignore[arg-type]
        attempt=attempt,
        connected_for=connected_for,
        stay_down=stay_down,
        reconnect_after=reconnect_after,
    )


@pytest.mark.parametrize("reason", REACTIVE)
def test_reactive_reconnects_through_backoff_and_the_counter_grows(reason: R) -> None:
    assert plan(reason, attempt=2, connected_for=1.0) == Plan(reconnect=True, attempt=3)


def test_counter_restarts_after_a_stable_connection() -> None:
    assert plan(R.SERVER_CLOSED, attempt=5, connected_for=60.0).attempt == 1
    assert plan(R.SERVER_CLOSED, attempt=5, connected_for=59.99).attempt == 6


def test_try_again_later_sets_the_server_unavailable_floor() -> None:
    result = plan(R.SERVER_CLOSED, code=1013, server_unavailable_delay=42.0)
    assert (result.reconnect, result.floor) == (True, 42.0)
    assert plan(R.SERVER_CLOSED, code=1011).floor == 0.0


@pytest.mark.parametrize("reason", REACTIVE)
def test_reactive_without_auto_reconnect_waits(reason: R) -> None:
    assert plan(reason, auto_reconnect=False) == Plan(reconnect=False, attempt=0)
    polled = plan(reason, auto_reconnect=False, should_reconnect=lambda: True)
    assert polled == Plan(reconnect=False, attempt=0, poll_should_reconnect=True)


@pytest.mark.parametrize("auto", [True, False])
@pytest.mark.parametrize("reason", PROACTIVE)
def test_proactive_waits_for_reconnect_after_or_should_reconnect(reason: R, auto: bool) -> None:
    assert plan(reason, auto_reconnect=auto, reconnect_after=3.0) == Plan(
        reconnect=False, attempt=0, reconnect_after=3.0
    )
    assert plan(reason, auto_reconnect=auto, should_reconnect=lambda: False) == Plan(
        reconnect=False, attempt=0, poll_should_reconnect=True
    )
    assert plan(reason, auto_reconnect=auto) == Plan(reconnect=False, attempt=0)


@pytest.mark.parametrize("reason", REACTIVE + PROACTIVE)
def test_close_and_kill_stay_down_whatever_else_is_set(reason: R) -> None:
    result = plan(reason, stay_down=True, reconnect_after=1.0, should_reconnect=lambda: True)
    assert result == Plan(reconnect=False, attempt=0)
