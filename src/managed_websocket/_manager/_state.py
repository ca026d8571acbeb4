"""The manager's connection state: one transition table, one writer, event-driven waiters.

Everything that decides which ``ConnectionState`` may follow which lives in ``TRANSITIONS``.
Only the supervisor (and the public operations, through it) calls :meth:`StateMachine.set`;
everyone else reads ``state`` or waits with :meth:`wait_for`. Each transition is logged at DEBUG
with the ``=`` prefix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from .._models import ConnectionState

__all__ = ["TRANSITIONS", "IllegalTransition", "StateMachine"]

_S = ConnectionState

#: state → the states that may follow it.
TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    _S.DISCONNECTED: frozenset({_S.CONNECTING, _S.RECONNECTING, _S.CLOSING, _S.CLOSED}),
    _S.CONNECTING: frozenset(
        {_S.CONNECTED, _S.RECONNECTING, _S.DISCONNECTED, _S.CLOSING, _S.CLOSED}
    ),
    _S.CONNECTED: frozenset({_S.RECONNECTING, _S.DISCONNECTED, _S.CLOSING, _S.CLOSED}),
    _S.RECONNECTING: frozenset({_S.CONNECTED, _S.DISCONNECTED, _S.CLOSING, _S.CLOSED}),
    _S.CLOSING: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A bug: the supervisor tried a transition the table does not allow."""


class _Transition:
    """A link in the chain of transitions; waiters walk it, so none is missed however fast."""

    __slots__ = ("_happened", "following", "state")

    def __init__(self, state: ConnectionState) -> None:
        self.state = state
        self.following: _Transition | None = None
        self._happened: anyio.Event | None = None  # made by the first waiter (needs a loop)

    async def wait(self) -> None:
        """Until ``following`` is known."""
        if self.following is None:
            if self._happened is None:
                self._happened = anyio.Event()
            await self._happened.wait()

    def done(self) -> None:
        if self._happened is not None:
            self._happened.set()


class StateMachine:
    __slots__ = ("_current", "_label", "_logger")

    def __init__(self, logger: logging.Logger, label: str) -> None:
        self._current = _Transition(ConnectionState.DISCONNECTED)
        self._logger = logger
        self._label = label

    @property
    def _state(self) -> ConnectionState:
        return self._current.state

    @property
    def state(self) -> ConnectionState:
        return self._state

    def set(self, new: ConnectionState) -> None:
        """Move to ``new``; a repeat of the current state is a no-op."""
        old = self._state
        if new is old:
            return
        if new not in TRANSITIONS[old]:
            raise IllegalTransition(f"{self._label}: {old.name} -> {new.name} is not allowed")
        self._logger.debug("= %s %s -> %s", self._label, old.name, new.name)
        previous, self._current = self._current, _Transition(new)
        previous.following = self._current
        previous.done()

    async def wait_for(
        self, accept: Callable[[ConnectionState], bool], timeout: float | None
    ) -> bool:
        """Wait until ``accept(state)``; False on timeout or once the state is terminal."""
        link = self._current
        with anyio.move_on_after(timeout):
            while not accept(link.state):
                if link.state.is_terminal():
                    return False
                await link.wait()
                assert link.following is not None
                link = link.following
            return True
        return False
