"""The state table and its waiters (no sockets)."""

from __future__ import annotations

import logging

import anyio
import pytest

from managed_websocket import ConnectionState
from managed_websocket._manager._state import TRANSITIONS, IllegalTransition, StateMachine

S = ConnectionState


def test_every_state_has_a_row_and_closed_is_final() -> None:
    assert set(TRANSITIONS) == set(S)
    assert TRANSITIONS[S.CLOSED] == frozenset()
    assert all(S.CLOSED in TRANSITIONS[s] for s in S if s is not S.CLOSED)


def test_predicates_follow_the_spec() -> None:
    assert {s for s in S if s.can_connect()} == {S.DISCONNECTED, S.RECONNECTING}
    assert {s for s in S if s.can_send()} == {S.CONNECTED}
    assert {s for s in S if s.is_terminal()} == {S.CLOSED}


def test_illegal_transition_names_both_states() -> None:
    machine = StateMachine(logging.getLogger("test"), "ws://h/")
    machine.set(S.CLOSING)
    machine.set(S.CLOSED)
    with pytest.raises(IllegalTransition, match=r"^ws://h/: CLOSED -> CONNECTING is not allowed$"):
        machine.set(S.CONNECTING)


def test_transitions_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    machine = StateMachine(logging.getLogger("test.state"), "ws://h/")
    with caplog.at_level(logging.DEBUG, logger="test.state"):
        machine.set(S.CONNECTING)
    assert caplog.messages == ["= ws://h/ DISCONNECTED -> CONNECTING"]


@pytest.mark.anyio
async def test_a_waiter_sees_a_state_that_lasted_no_time_at_all() -> None:
    machine = StateMachine(logging.getLogger("test"), "ws://h/")
    machine.set(S.CONNECTING)
    machine.set(S.CONNECTED)
    seen: list[bool] = []

    async def wait_down() -> None:
        seen.append(await machine.wait_for(lambda s: s is S.RECONNECTING, 1.0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_down)
        await anyio.wait_all_tasks_blocked()
        machine.set(S.RECONNECTING)
        machine.set(S.CONNECTED)  # before the waiter even runs
    assert seen == [True]


@pytest.mark.anyio
async def test_waiting_ends_false_on_timeout_and_once_closed() -> None:
    machine = StateMachine(logging.getLogger("test"), "ws://h/")
    assert await machine.wait_for(lambda s: s is S.CONNECTED, 0.01) is False
    results: list[bool] = []

    async def wait_connected() -> None:
        results.append(await machine.wait_for(lambda s: s is S.CONNECTED, None))

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_connected)
        await anyio.wait_all_tasks_blocked()
        machine.set(S.CLOSED)
    assert results == [False]
