"""urls=[...]: failover between endpoints, each with its own backoff, on both backends."""

from __future__ import annotations

import socket

import anyio
import pytest

from managed_websocket import Connecting, ManagedWebSocket, WebSocketReconnectError
from managed_websocket.testing import open_test_server

from ._harness import FAST, WAIT, wait_until

pytestmark = pytest.mark.anyio


def closed_port() -> int:
    """A port nothing listens on: a dial to it is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_dead_first_endpoint_fails_over_to_the_next_at_once() -> None:
    dead = f"ws://127.0.0.1:{closed_port()}/ws"
    async with open_test_server() as server:
        ws = ManagedWebSocket(urls=[dead, server.url + "/ws"], **{**FAST, "reconnect_delay": 5.0})
        events = ws.events()
        with anyio.fail_after(WAIT):  # not the 5 s the dead endpoint now waits
            async with ws:
                assert ws.url == server.url + "/ws"
                assert ws.stats.connects == 1
        dials = [e async for e in events if isinstance(e, Connecting)]
        assert [(e.attempt, e.delay) for e in dials] == [(0, 0.0), (1, 0.0)]


async def test_a_dropped_endpoint_backs_off_while_the_next_dial_goes_to_another() -> None:
    async with open_test_server() as first, open_test_server() as second:
        first.refuse_handshakes(503, count=None)
        ws = ManagedWebSocket(
            urls=[first.url, second.url],
            **{**FAST, "reconnect_delay": 0.2, "max_reconnect_delay": 0.2},
        )
        async with ws:
            assert ws.url == second.url  # the first refused: failed over
            first.clear_faults()
            with anyio.fail_after(WAIT):
                # The second drops us: it backs off 0.2 s from now, the first has about 0.05 s
                # of its own 0.2 s left: the redial goes to the first, well before 0.2 s.
                await anyio.sleep(0.15)
                dropped = anyio.current_time()
                await second.drop_clients()
                await wait_until(lambda: ws.stats.connects == 2 and ws.is_connected)
                assert ws.url == first.url
                assert anyio.current_time() - dropped < 0.18
                # The first drops us once the second's wait is over: straight to the second.
                await anyio.sleep(0.2)
                dropped = anyio.current_time()
                await first.drop_clients()
                await wait_until(lambda: ws.stats.connects == 3 and ws.is_connected)
                assert ws.url == second.url
                assert anyio.current_time() - dropped < 0.15
        assert [len(first.clients), len(second.clients)] == [2, 2]


async def test_when_every_endpoint_is_down_the_attempts_alternate_and_run_out() -> None:
    urls = [f"ws://127.0.0.1:{closed_port()}/a", f"ws://127.0.0.1:{closed_port()}/b"]
    ws = ManagedWebSocket(
        urls=urls,
        **{**FAST, "reconnect_delay": 0.05, "max_reconnect_delay": 0.4},
        max_reconnect_attempts=5,
    )
    events = ws.events()
    with anyio.fail_after(WAIT), pytest.raises(WebSocketReconnectError):
        async with ws:
            pass
    dials = [e async for e in events if isinstance(e, Connecting)]
    assert len(dials) == 6
    # a, b at once; then each endpoint's own exponential delay: a after 0.05 s, b right after
    # it (its 0.05 s ran meanwhile), then 0.1 s for each.
    delays = [round(e.delay, 2) for e in dials]
    assert delays[0] == 0.0
    assert delays[1] == 0.0
    assert 0.03 <= delays[2] <= 0.05
    assert delays[3] <= 0.01
    assert 0.07 <= delays[4] <= 0.1
    assert delays[5] <= 0.01


def test_url_and_urls_are_exclusive() -> None:
    with pytest.raises(TypeError, match="either url or urls"):
        ManagedWebSocket("ws://a.example/", urls=["ws://b.example/"])
    with pytest.raises(TypeError, match="either url or urls"):
        ManagedWebSocket()
    with pytest.raises(TypeError, match="urls must be a list of str"):
        ManagedWebSocket(urls="ws://a.example/")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="an empty list"):
        ManagedWebSocket(urls=[])
    with pytest.raises(ValueError, match="invalid WebSocket URL"):
        ManagedWebSocket(urls=["ws://a.example/", "http://b.example/"])
