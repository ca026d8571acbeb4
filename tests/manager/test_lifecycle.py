"""Lifecycle: close() / kill() (recoverable), shutdown() / force_close() (terminal), waking every
waiter and consumer, cancellation, embedding with task_group.start(ws.run), and no leaks.

Every test runs the real manager against the real testing server on both backends. Defect numbers
refer to replaced-system.md section 6.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc
import pytest

from managed_websocket import (
    ConnectionState,
    DisconnectReason,
    ManagedWebSocket,
    WebSocketClosedError,
    WebSocketHandshakeError,
    open_managed_websocket,
)
from managed_websocket._manager._inbox import Inbox, Puller
from managed_websocket.testing import open_test_server

from ._harness import FAST, WAIT, Recorder, manager, our_tasks, wait_until

pytestmark = pytest.mark.anyio

S = ConnectionState
R = DisconnectReason
TERMINAL = ["shutdown", "force_close"]


def flags(ws: ManagedWebSocket) -> tuple[bool, bool, bool]:
    return ws.is_dead, ws.is_recoverable, ws.is_shutdown


# -- close() and kill(): recoverable --------------------------------------------------------------


async def test_close_is_graceful_and_not_terminal() -> None:
    received = Recorder()
    async with open_test_server() as server, manager(server, on_message=received) as ws:
        with anyio.fail_after(WAIT):
            for i in range(3):
                await server.broadcast(f"m{i}")
            await received.wait(3)
            await ws.close()
            await server.clients[0].wait_closed()
        assert (server.clients[0].ended_by, server.clients[0].close_code) == (
            "client_close",
            1000,
        )
        assert ws.state is S.DISCONNECTED
        assert flags(ws) == (True, True, False)
        assert ws.last_disconnect is not None
        assert ws.last_disconnect.reason is R.USER_REQUESTED
        # The messages queued before close() are drained, then the iteration ends.
        with anyio.fail_after(WAIT):
            assert [m async for m in ws] == ["m0", "m1", "m2"]
            with pytest.raises(WebSocketClosedError):
                await ws.receive()
        with pytest.raises(WebSocketClosedError):
            await ws.send("not connected")
        await ws.close()  # idempotent
        assert ws.state is S.DISCONNECTED

        # connect() works again, and so does consuming.
        got: list[Any] = []
        with anyio.fail_after(WAIT):
            await ws.connect()
            assert flags(ws) == (False, False, False)
            async with anyio.create_task_group() as tg:

                async def consume() -> None:
                    got.extend([m async for m in ws])

                tg.start_soon(consume)
                await server.wait_for_handshakes(2)
                await server.broadcast("again")
                await received.wait(4)
                await anyio.sleep(0.02)
                await ws.close()  # a consumer waiting on an empty queue ends too
        assert got == ["again"]
        assert server.clients[1].close_code == 1000
        assert len(server.clients) == 2


async def test_kill_aborts_tcp_without_a_close_frame_and_is_recoverable() -> None:
    """B15: the old kill() closed with 1006, which websockets refused, and the socket stayed open."""
    reasons = Recorder()
    async with open_test_server() as server, manager(server, on_disconnect=reasons) as ws:
        with anyio.fail_after(WAIT):
            await ws.kill()
            assert ws.state is S.DISCONNECTED
            await server.clients[0].wait_closed()
        record = server.clients[0]
        assert (record.ended_by, record.close_code, record.closed) == ("client_eof", None, True)
        assert server.live_clients == []
        assert reasons.args == [(R.KILLED,)]
        assert ws.last_disconnect is not None
        assert ws.last_disconnect.reason is R.KILLED
        assert (ws.stats.reactive_disconnects, ws.stats.proactive_disconnects) == (1, 0)
        assert flags(ws) == (True, True, False)
        await anyio.sleep(0.1)
        assert len(server.clients) == 1  # stays down until connect()
        with anyio.fail_after(WAIT):
            await ws.connect()
            await ws.send("back")
            assert await ws.receive() == "back"


# -- shutdown() and force_close(): terminal ------------------------------------------------------


@pytest.mark.parametrize("operation", TERMINAL)
async def test_terminal_close_wakes_every_consumer_and_waiter(operation: str) -> None:
    """B11: consumers hung after shutdown; D16: wait_connected() was True after close."""
    outcome: dict[str, Any] = {}
    async with open_test_server() as server, manager(server) as ws:

        async def iterate() -> None:
            outcome["iterate"] = [m async for m in ws]

        async def receive() -> None:
            try:
                await ws.receive()
            except WebSocketClosedError as exc:
                outcome["receive"] = exc

        async def wait_disconnected() -> None:
            outcome["wait_disconnected"] = await ws.wait_disconnected()

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                for consumer in (iterate, receive, wait_disconnected):
                    tg.start_soon(consumer)
                await anyio.sleep(0.05)  # all three are blocked now
                assert outcome == {}
                await getattr(ws, operation)()
            await server.clients[0].wait_closed()
            assert await ws.wait_connected() is False

        assert outcome["iterate"] == []
        assert isinstance(outcome["receive"], WebSocketClosedError)
        assert outcome["wait_disconnected"] is True
        assert ws.state is S.CLOSED
        assert flags(ws) == (True, False, True)
        record = server.clients[0]
        if operation == "shutdown":
            assert (record.ended_by, record.close_code) == ("client_close", 1000)
        else:
            assert (record.ended_by, record.close_code) == ("client_eof", None)
        with pytest.raises(WebSocketClosedError):
            await ws.connect()
        with pytest.raises(WebSocketClosedError):
            await ws.send("x")
        # Everything after the end is idempotent and stays terminal.
        for again in ("close", "kill", "shutdown", "force_close"):
            await getattr(ws, again)()
        await ws.schedule_reconnect(0)
        assert ws.state is S.CLOSED
        assert [m async for m in ws] == []
        await anyio.sleep(0.1)
        assert len(server.clients) == 1


@pytest.mark.parametrize("operation", TERMINAL)
@pytest.mark.parametrize("first", ["close", "request_disconnect"])
async def test_terminal_close_while_the_socket_is_closing(first: str, operation: str) -> None:
    """A shutdown that arrives while the previous connection is still closing (its closing
    handshake runs shielded) must not make the supervisor move on from CLOSING."""
    async with open_test_server() as server:
        ws = manager(server, close_timeout=0.3)
        async with ws:
            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tg:
                    server.silence_clients()  # so our close frame gets no answer
                    tg.start_soon(getattr(ws, first))
                    await anyio.sleep(0.05)
                    assert ws.state is S.CONNECTED  # still waiting for the peer's close frame
                    await getattr(ws, operation)()
                    assert ws.state is S.CLOSED
        assert ws.state is S.CLOSED
        assert ws.stats.connects == 1


@pytest.mark.parametrize("operation", TERMINAL)
async def test_terminal_close_during_an_outage_wakes_consumers_waiting_for_the_reconnect(
    operation: str,
) -> None:
    """B11: a consumer waiting through a reconnect hung forever after shutdown."""
    outcome: dict[str, Any] = {}
    async with open_test_server() as server:
        ws = manager(server, reconnect_delay=0.05, max_reconnect_attempts=None)
        async with ws:

            async def iterate() -> None:
                outcome["iterate"] = [m async for m in ws]

            async def receive() -> None:
                try:
                    await ws.receive()
                except WebSocketClosedError as exc:
                    outcome["receive"] = exc

            async def wait_connected() -> None:
                outcome["wait_connected"] = await ws.wait_connected()

            server.refuse_handshakes(503, count=None)
            with anyio.fail_after(WAIT):
                await server.drop_clients()
                await server.wait_for_connections(2)
                async with anyio.create_task_group() as tg:
                    for consumer in (iterate, receive, wait_connected):
                        tg.start_soon(consumer)
                    await anyio.sleep(0.05)
                    assert outcome == {}
                    assert ws.state is S.RECONNECTING
                    await getattr(ws, operation)()
        assert outcome["iterate"] == []
        assert isinstance(outcome["receive"], WebSocketClosedError)
        assert outcome["wait_connected"] is False
        assert ws.state is S.CLOSED


@pytest.mark.parametrize("operation", ["shutdown", "force_close", "close", "kill"])
async def test_stopping_during_an_outage_is_final_when_the_server_comes_back(
    operation: str,
) -> None:
    """B2, the key defect: an orphaned reconnect chain revived a closed manager once the server
    came back (CONNECTED again, even after shutdown())."""
    async with open_test_server() as server:
        ws = manager(
            server, reconnect_delay=0.05, max_reconnect_delay=0.05, max_reconnect_attempts=None
        )
        async with ws:
            server.refuse_handshakes(503, count=None)
            with anyio.fail_after(WAIT):
                await server.drop_clients()
                await server.wait_for_connections(3)  # two refused attempts: in backoff
            assert ws.state is S.RECONNECTING
            with anyio.fail_after(WAIT):
                await getattr(ws, operation)()
            expected = S.CLOSED if operation in TERMINAL else S.DISCONNECTED
            assert ws.state is expected
            seen = len(server.clients)
            server.clear_faults()
            # Twenty backoff periods for the terminal operations (the key case), ten otherwise.
            await anyio.sleep(1.0 if operation in TERMINAL else 0.5)
            assert len(server.clients) == seen
            assert not any(record.handshake_completed for record in server.clients[1:])
            assert ws.state is expected
            assert ws.is_shutdown is (operation in TERMINAL)
            assert ws.stats.connects == 1
            with anyio.fail_after(WAIT):
                for record in server.clients:
                    await record.wait_closed()


# -- waiting and flags ------------------------------------------------------------------------


async def test_wait_connected_reflects_the_state_truthfully() -> None:
    """D16: the old wait_connected() returned True after force_close()/shutdown()."""
    async with open_test_server() as server, manager(server) as ws:
        with anyio.fail_after(WAIT):
            assert await ws.wait_connected(timeout=0)
            assert await ws.wait_disconnected(timeout=0.05) is False
            await ws.close()
            start = anyio.current_time()
            assert await ws.wait_connected(timeout=0.1) is False  # not terminal: it waited
            assert anyio.current_time() - start >= 0.1 - 0.005
            assert await ws.wait_disconnected(timeout=0)

            async with anyio.create_task_group() as tg:
                results: list[bool] = []

                async def waiter() -> None:
                    results.append(await ws.wait_connected())  # no timeout

                tg.start_soon(waiter)
                await anyio.sleep(0.05)
                assert results == []
                await ws.shutdown()
            assert results == [False]
            start = anyio.current_time()
            assert await ws.wait_connected() is False  # at once, no timeout needed
            assert anyio.current_time() - start < 0.05


async def test_flags_in_each_state() -> None:
    async with open_test_server() as server:
        ws = manager(server, reconnect_delay=10.0, max_reconnect_delay=10.0)
        assert ws.state is S.DISCONNECTED  # not started yet
        assert flags(ws) == (True, True, False)
        async with anyio.create_task_group() as tg:
            server.stall_handshakes()
            tg.start_soon(ws.run)
            with anyio.fail_after(WAIT):
                await server.wait_for_connections(1)
            assert ws.state is S.CONNECTING
            assert flags(ws) == (False, False, False)
            with anyio.fail_after(WAIT):
                await ws.kill()  # gives up the stalled dial
            assert ws.state is S.DISCONNECTED
            assert flags(ws) == (True, True, False)
            with anyio.fail_after(WAIT):
                await ws.connect()
            assert ws.state is S.CONNECTED
            assert flags(ws) == (False, False, False)
            with anyio.fail_after(WAIT):
                await server.drop_clients()
                await ws.wait_disconnected()
            assert ws.state is S.RECONNECTING  # waiting out a 10 s backoff
            assert flags(ws) == (False, False, False)
            with anyio.fail_after(WAIT):
                await ws.shutdown()
            assert ws.state is S.CLOSED
            assert flags(ws) == (True, False, True)


# -- cancellation and no polling ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["async-for", "stream", "batches", "receive"])
async def test_consumers_never_swallow_cancellation(how: str) -> None:
    """B10: the old stream() caught CancelledError and returned, so code after the loop ran."""
    progress: list[Any] = []
    async with open_test_server() as server, manager(server) as ws:

        async def consume() -> None:
            if how == "receive":
                while True:
                    progress.append(await ws.receive())
            else:
                iterator = {"async-for": ws, "stream": ws.stream(), "batches": ws.batches()}[how]
                async for message in iterator:  # the loop itself is under test
                    progress.append(message)  # noqa: PERF401
            progress.append("after the loop")  # must never run

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await server.broadcast("first")
                await wait_until(lambda: len(progress) == 1)
                await anyio.sleep(0.05)  # blocked waiting for the next message
                tg.cancel_scope.cancel()
        assert progress == [["first"] if how == "batches" else "first"]
        # Nothing was lost: the manager is fine, and the next consumer gets the next message.
        assert ws.is_connected
        with anyio.fail_after(WAIT):
            await server.broadcast("second")
            assert await ws.receive() == "second"


class _CountingPuller:
    def __init__(self, puller: Puller) -> None:
        self._puller = puller
        self.pulls = 0

    async def pull(self) -> bool:
        self.pulls += 1
        return await self._puller.pull()

    def stop_pull(self) -> None:
        self._puller.stop_pull()


async def test_a_waiting_consumer_does_not_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """B11: the old stream() polled its queue every second (and noticed close up to 1 s late).

    An idle consumer waits in one place: reading the socket itself (the session's pull) or, when
    it cannot, the inbox's arrival event. Either way, one wait per message, not a loop of them."""
    async with open_test_server() as server, manager(server) as ws:
        inbox = ws._inbox
        counted = _CountingWaits(Inbox._wait_for_arrival)

        async def counting_wait(self: Inbox) -> None:
            await counted.wait(self)

        monkeypatch.setattr(Inbox, "_wait_for_arrival", counting_wait)
        session = inbox.puller
        assert session is not None  # the live session offers to read for consumers
        counting = _CountingPuller(session)
        inbox.puller = counting
        arrivals: list[tuple[float, Any]] = []

        async def consume() -> None:
            async for message in ws:
                arrivals.append((anyio.current_time(), message))  # noqa: PERF401

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.sleep(1.1)  # idle: longer than the old 1 s poll
                assert (counting.pulls, counted.calls) == (
                    1,
                    0,
                )  # one read of the socket, still pending
                sent = anyio.current_time()
                await server.broadcast("wake")
                await wait_until(lambda: bool(arrivals))
                await anyio.sleep(0.05)
                assert (counting.pulls, counted.calls) == (2, 0)  # the message, then the next wait
                closing = anyio.current_time()
                await ws.close()
            ended = anyio.current_time()
        assert [m for _, m in arrivals] == ["wake"]
        assert arrivals[0][0] - sent < 0.1
        assert ended - closing < 0.2
        # close() interrupted the read; the session is over, so the consumer tried once more and
        # then took the end of the stream from the inbox: no polling.
        assert counting.pulls <= 3
        assert counted.calls <= 1


class _CountingWaits:
    """Wraps the inbox's wait for an arrival (when the consumer cannot read the socket itself)
    and counts the waits."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    async def wait(self, inbox: Inbox) -> None:
        self.calls += 1
        await self.inner(inbox)


# -- embedding and leaks ------------------------------------------------------------------------


async def test_embedded_run_is_cancelled_from_outside(anyio_backend_name: str) -> None:
    async with open_test_server() as server:
        ws = manager(server)
        before = our_tasks(anyio_backend_name)
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                await tg.start(ws.run)
                assert ws.is_connected  # started() comes after the first connection
                await ws.send("hi")
                assert await ws.receive() == "hi"
                tg.cancel_scope.cancel()
            await server.clients[0].wait_closed()
        assert our_tasks(anyio_backend_name) == before
        assert server.live_clients == []
        assert ws.state is S.CLOSED
        assert ws.is_shutdown
        with pytest.raises(WebSocketClosedError):
            await ws.connect()
        with pytest.raises(RuntimeError, match="only once"):
            await ws.run()


async def test_embedded_run_returns_after_shutdown_and_raises_a_fatal_error() -> None:
    outcome: list[str] = []
    async with open_test_server() as server:
        ws = manager(server)

        async def runner(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            await ws.run(task_status=task_status)
            outcome.append("returned")

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                await tg.start(runner)
                await ws.shutdown()
        assert outcome == ["returned"]

        server.refuse_handshakes(403)
        failing = manager(server)
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                with pytest.raises(WebSocketHandshakeError) as info:
                    await tg.start(failing.run)
        assert info.value.status_code == 403
        assert failing.state is S.CLOSED


async def test_no_socket_or_task_outlives_the_context(anyio_backend_name: str) -> None:
    async with open_test_server() as server:
        before = our_tasks(anyio_backend_name)
        with anyio.fail_after(WAIT):
            async with open_managed_websocket(server.url + "/ws", **FAST) as ws:
                await ws.subscribe("a", "b")
                await server.drop_clients()  # a reactive reconnect
                await server.wait_for_handshakes(2)
                await ws.wait_connected()
                await ws.request_disconnect(reconnect_after=0)  # a proactive one
                await server.wait_for_handshakes(3)
                await ws.wait_connected()
                await ws.kill()
                await ws.connect()
                if anyio_backend_name == "asyncio":
                    assert our_tasks(anyio_backend_name) - before  # the filter finds them
            for record in server.clients:
                await record.wait_closed()
        assert our_tasks(anyio_backend_name) == before
        assert len(server.clients) == 4
        assert server.live_clients == []
        assert ws.state is S.CLOSED
        assert server.clients[3].close_code == 1000  # the exit closes gracefully


@pytest.mark.parametrize("ping_interval", [None, 0.05])
async def test_cancelling_around_async_with_closes_gracefully(ping_interval: float | None) -> None:
    """A scope cancelled around ``async with ws`` (Ctrl-C in an app) reaches the manager's own
    tasks before its __aexit__ runs the graceful shutdown: the close must be graceful all the
    same, not an abort that depends on which task the event loop ran first."""
    async with open_test_server(echo=False) as server:
        for _ in range(5):  # an ordering race: a few rounds
            with anyio.fail_after(WAIT):
                with anyio.CancelScope() as scope:
                    async with manager(server, ping_interval=ping_interval) as ws:
                        await anyio.sleep(0.02)
                        scope.cancel()
                        await ws.receive()  # cancelled here
                record = server.clients[-1]
                await record.wait_closed()
            assert (record.ended_by, record.close_code) == ("client_close", 1000)
            assert ws.stats.disconnects == 1
