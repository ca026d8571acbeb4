"""When the manager dials again: backoff shapes measured end to end, at the test server (SPEC 3, 5).

Each test runs twice:

- ``trio-virtual``: trio with ``MockClock(autojump_threshold=AUTOJUMP)``. Virtual time stands still
  while anything runs and jumps to the next deadline once every task has been blocked for
  ``AUTOJUMP`` *real* seconds. Socket I/O on 127.0.0.1 completes far faster than that, so the only
  jumps are the manager's backoff sleeps (and the test's own sleeps), and every measured gap
  equals the computed delay exactly. The autojump threshold is positive, not 0: with 0 the clock
  would also jump while a task waits for a socket, straight to a pending ``connection_timeout``.
  For the same reason ``connection_timeout`` is huge here, so a spurious jump (a starved CPU)
  shows up as a wrong gap or a ``fail_after`` timeout rather than passing silently.
- ``asyncio``: real time with short delays; each gap must be >= its nominal delay and below
  nominal + ``SLACK``. Parameters are chosen so that the wrong policy would break those bounds.

Arrival times are taken when the server accepts TCP (see ``_reconnect_support.AcceptLog``).
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from managed_websocket import (
    DisconnectReason,
    ReconnectStrategy,
    WebSocketReconnectError,
    open_managed_websocket,
)
from managed_websocket.testing import open_test_server

from ._reconnect_support import AcceptLog, accept_log, run_until_it_fails

pytestmark = pytest.mark.anyio

#: Real seconds all tasks must be blocked before the mock clock jumps.
AUTOJUMP = 0.05
#: Real time: how late a reconnect may reach the server (scheduling, localhost handshakes).
SLACK = 0.5
#: Virtual time: float rounding only.
EXACT = 1e-6
#: Bound for every test, in the test's own clock (virtual seconds under MockClock).
WAIT = 600


@pytest.fixture(params=["asyncio", "trio-virtual"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """asyncio in real time; trio on a fresh virtual clock per test."""
    if request.param == "trio-virtual":
        return ("trio", {"clock": MockClock(autojump_threshold=AUTOJUMP)})
    return "asyncio"


@pytest.fixture
def virtual(anyio_backend: Any) -> bool:
    return bool(anyio_backend != "asyncio")


def options(virtual: bool, **overrides: Any) -> dict[str, Any]:
    """Exact delays, no keepalive, no give-up, and no timeout a spurious jump could reach."""
    return {
        "reconnect_jitter": 0,
        "max_reconnect_attempts": None,
        "ping_interval": None,
        "connection_timeout": 100_000 if virtual else 5,
        **overrides,
    }


def assert_gaps(
    gaps: list[float], nominal: list[float], virtual: bool, *, jitter: float = 0.0
) -> None:
    """Each gap is its nominal delay: exactly (virtual), or in [d·(1−jitter), d + SLACK) (real);
    with jitter, in [d·(1−jitter), d] exactly on the virtual clock."""
    assert len(gaps) == len(nominal), (gaps, nominal)
    if virtual and not jitter:
        assert gaps == pytest.approx(nominal, abs=EXACT)
        return
    high = EXACT if virtual else SLACK
    bad = [
        (i, round(gap, 4), d)
        for i, (gap, d) in enumerate(zip(gaps, nominal, strict=True))
        if not d * (1 - jitter) - EXACT <= gap < d + high
    ]
    assert not bad, f"gaps {[round(g, 4) for g in gaps]}, nominal {nominal}: (index, gap, d) {bad}"


async def drop_and_wait(log: AcceptLog, clients: int) -> float:
    """Drop the live connection (FIN); wait until ``clients`` connections were accepted in all.
    Returns when the drop started."""
    dropped_at = anyio.current_time()
    await log.server.drop_clients()
    await log.wait_for(clients)
    return dropped_at


# -- The shape of each strategy -----------------------------------------------------------------


async def test_exponential_backoff_doubles_per_failed_dial_and_caps(virtual: bool) -> None:
    b = 0.05
    with anyio.fail_after(WAIT):
        async with open_test_server() as server, accept_log(server) as log:
            opts = options(virtual, reconnect_delay=b, max_reconnect_delay=3 * b)
            async with open_managed_websocket(server.url, **opts) as ws:
                server.refuse_handshakes(503, count=4)
                dropped_at = await drop_and_wait(log, 6)
                assert await ws.wait_connected(WAIT)
                # attempts 1..5: b, 2b, 4b capped at 3b, then 3b, 3b
                assert_gaps(log.gaps(dropped_at, 1), [b, 2 * b, 3 * b, 3 * b, 3 * b], virtual)
                assert ws.stats.reconnect_attempts == 5
    assert [c.ended_by for c in server.clients][:5] == ["server_drop"] + ["refused"] * 4


async def test_fixed_delay_waits_the_same_before_every_attempt(virtual: bool) -> None:
    d = 0.1  # exponential would give 0.1, 0.2, 0.4, 0.8: the last breaks d + SLACK
    with anyio.fail_after(WAIT):
        async with open_test_server() as server, accept_log(server) as log:
            opts = options(
                virtual,
                reconnect_strategy=ReconnectStrategy.FIXED_DELAY,
                reconnect_delay=d,
                max_reconnect_delay=10,
            )
            async with open_managed_websocket(server.url, **opts):
                server.refuse_handshakes(503, count=3)
                dropped_at = await drop_and_wait(log, 5)
                assert_gaps(log.gaps(dropped_at, 1), [d] * 4, virtual)


async def test_immediate_ignores_the_delay(virtual: bool) -> None:
    with anyio.fail_after(WAIT):
        async with open_test_server() as server, accept_log(server) as log:
            opts = options(
                virtual,
                reconnect_strategy=ReconnectStrategy.IMMEDIATE,
                reconnect_delay=1.0,  # would break the real-time bound of 0 + SLACK
            )
            async with open_managed_websocket(server.url, **opts) as ws:
                server.refuse_handshakes(503, count=3)
                dropped_at = await drop_and_wait(log, 5)
                assert_gaps(log.gaps(dropped_at, 1), [0.0] * 4, virtual)
                assert await ws.wait_connected(WAIT)


async def test_jitter_draws_each_delay_from_the_lower_half(virtual: bool) -> None:
    b = 0.05
    with anyio.fail_after(WAIT):
        async with open_test_server() as server, accept_log(server) as log:
            opts = options(
                virtual, reconnect_delay=b, max_reconnect_delay=4 * b, reconnect_jitter=0.5
            )
            async with open_managed_websocket(server.url, **opts):
                server.refuse_handshakes(503, count=5)
                dropped_at = await drop_and_wait(log, 7)
                gaps = log.gaps(dropped_at, 1)
                nominal = [b, 2 * b, 4 * b, 4 * b, 4 * b, 4 * b]
                assert_gaps(gaps, nominal, virtual, jitter=0.5)
                if virtual:  # exact times: the draws really vary
                    assert len(
                        {round(g / d, 9) for g, d in zip(gaps, nominal, strict=True)}
                    ) == len(gaps)


# -- Servers that keep failing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1000, DisconnectReason.SERVER_CLOSED), (None, DisconnectReason.NETWORK_ERROR)],
    ids=["flap-close-1000", "flap-fin"],
)
async def test_a_flapping_server_is_not_hammered(
    virtual: bool, code: int | None, reason: DisconnectReason
) -> None:
    """Accept, then close at once, forever: each short-lived connection counts as a failed
    attempt, so the delays grow exactly as for refused dials (SPEC section 6)."""
    b = 0.05
    with anyio.fail_after(WAIT):
        async with open_test_server() as server, accept_log(server) as log:
            opts = options(virtual, reconnect_delay=b, max_reconnect_delay=4 * b)
            async with open_managed_websocket(server.url, **opts) as ws:
                server.flap(count=None, code=code)
                dropped_at = await drop_and_wait(log, 5)  # the 4th flap has been accepted
                server.clear_faults()
                await server.wait_for_handshakes(6)
                await log.wait_for(6)
                assert await ws.wait_connected(WAIT)
                assert_gaps(log.gaps(dropped_at, 1), [b, 2 * b, 4 * b, 4 * b, 4 * b], virtual)
                assert ws.last_disconnect is not None
                assert ws.last_disconnect.reason is reason
                assert ws.stats.reconnect_attempts == 5
    flapped = "server_close" if code is not None else "server_drop"
    assert [c.ended_by for c in server.clients][1:5] == [flapped] * 4


async def test_failed_dials_and_short_connections_share_one_attempt_counter(
    virtual: bool,
) -> None:
    """Refused, refused, accepted-then-closed: the connection after that is attempt 4."""
    b = 0.05
    with anyio.fail_after(WAIT):
        async with open_test_server() as server, accept_log(server) as log:
            opts = options(virtual, reconnect_delay=b, max_reconnect_delay=100 * b)
            async with open_managed_websocket(server.url, **opts) as ws:
                server.refuse_handshakes(503, count=2)
                server.flap(count=1, code=1000)
                dropped_at = await drop_and_wait(log, 5)
                assert await ws.wait_connected(WAIT)
                assert_gaps(log.gaps(dropped_at, 1), [b, 2 * b, 4 * b, 8 * b], virtual)


async def test_the_attempt_counter_resets_only_after_a_stable_connection(virtual: bool) -> None:
    # Real time: base 0.25, so "reset" (b) and "grew" (2b) are 0.25 s apart.
    b, stable = (1.0, 5.0) if virtual else (0.25, 0.3)
    long_hold, short_hold = (stable + 1, stable - 1) if virtual else (stable + 0.15, 0.1)
    gaps: list[float] = []
    with anyio.fail_after(WAIT):
        async with open_test_server() as server, accept_log(server) as log:
            opts = options(
                virtual,
                reconnect_delay=b,
                max_reconnect_delay=10 * b,
                stable_connection_time=stable,
            )
            async with open_managed_websocket(server.url, **opts) as ws:
                for index, hold in enumerate([0.0, 0.0, long_hold, short_hold], start=1):
                    await anyio.sleep(hold)
                    dropped_at = await drop_and_wait(log, index + 1)
                    gaps.append(log.times[index] - dropped_at)
                    await server.wait_for_handshakes(index + 1)
                    assert await ws.wait_connected(WAIT)
    if virtual:
        assert gaps == pytest.approx([b, 2 * b, b, 2 * b], abs=EXACT)
    else:
        # grew: >= 2b; reset: b, well below 2b
        assert b <= gaps[0] < 2 * b, gaps
        assert 2 * b <= gaps[1] < 2 * b + SLACK, gaps
        assert b <= gaps[2] < 2 * b, gaps
        assert 2 * b <= gaps[3] < 2 * b + SLACK, gaps


# -- Delays the server asks for -----------------------------------------------------------------


async def test_a_1013_close_sets_a_floor_for_the_next_attempt_only(virtual: bool) -> None:
    b = 0.01
    floor = 30.0 if virtual else 0.3
    with anyio.fail_after(WAIT):
        async with open_test_server() as server, accept_log(server) as log:
            opts = options(
                virtual, reconnect_delay=b, max_reconnect_delay=1, server_unavailable_delay=floor
            )
            async with open_managed_websocket(server.url, **opts) as ws:
                closed_at = anyio.current_time()
                await server.close_clients(1013, "try again later")
                await log.wait_for(2)
                gap_after_1013 = log.times[1] - closed_at
                assert ws.last_disconnect is not None
                assert ws.last_disconnect.code == 1013
                assert ws.last_disconnect.close_reason == "try again later"
                assert await ws.wait_connected(WAIT)

                closed_at = anyio.current_time()
                await server.close_clients(1000)
                await log.wait_for(3)
                gap_after_1000 = log.times[2] - closed_at
    if virtual:
        assert gap_after_1013 == pytest.approx(floor, abs=EXACT)
        assert gap_after_1000 == pytest.approx(2 * b, abs=EXACT)  # attempt 2, no floor
    else:
        assert floor <= gap_after_1013 < floor + SLACK
        assert 2 * b <= gap_after_1000 < floor


@pytest.mark.parametrize("status", [503, 429])
async def test_retry_after_sets_a_floor_for_the_next_attempt_only(
    virtual: bool, status: int
) -> None:
    b = 0.01
    retry_after = 2 if virtual else 1
    with anyio.fail_after(WAIT):
        async with open_test_server() as server, accept_log(server) as log:
            opts = options(virtual, reconnect_delay=b, max_reconnect_delay=1)
            async with open_managed_websocket(server.url, **opts) as ws:
                server.refuse_handshakes(status, [("Retry-After", str(retry_after))], count=1)
                server.refuse_handshakes(503, count=1)  # no Retry-After: back to the policy
                dropped_at = await drop_and_wait(log, 4)
                assert await ws.wait_connected(WAIT)
                # attempt 1: b; attempt 2: max(2b, Retry-After); attempt 3: 4b
                assert_gaps(log.gaps(dropped_at, 1), [b, retry_after, 4 * b], virtual)
    assert [c.ended_by for c in server.clients][1:3] == ["refused", "refused"]


async def test_exhaustion_gives_up_without_waiting_for_an_attempt_it_will_not_make(
    virtual: bool,
) -> None:
    b = 1.0 if virtual else 0.05
    with anyio.fail_after(WAIT):
        async with open_test_server() as server, accept_log(server) as log:
            opts = options(
                virtual, reconnect_delay=b, max_reconnect_delay=100, max_reconnect_attempts=3
            )
            dropped_at = 0.0

            async def refuse_after_a_drop() -> None:
                nonlocal dropped_at
                server.refuse_handshakes(503, count=None)
                dropped_at = anyio.current_time()
                await server.drop_clients()

            ws = open_managed_websocket(server.url, **opts)
            with pytest.raises(WebSocketReconnectError) as raised:
                await run_until_it_fails(ws, refuse_after_a_drop)
            failed_after = anyio.current_time() - dropped_at
            assert_gaps(log.gaps(dropped_at, 1), [b, 2 * b, 4 * b], virtual)
    assert raised.value.attempts == 3
    assert len(server.clients) == 4
    if virtual:
        assert failed_after == pytest.approx(7 * b, abs=EXACT)
    else:
        assert 7 * b <= failed_after < 7 * b + SLACK
