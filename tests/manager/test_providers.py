"""Fresh credentials for every dial (``url`` and ``headers`` providers) and the data watchdog
(``max_silence``), against the real testing server on both backends."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import anyio
import pytest

from managed_websocket import (
    DisconnectReason,
    ManagedWebSocket,
    WebSocketHandshakeError,
    WebSocketReconnectError,
)
from managed_websocket.testing import ClientRecord, WebSocketTestServer, open_test_server

from ._harness import FAST, WAIT, Recorder, as_kind, wait_until

pytestmark = pytest.mark.anyio

KINDS = ["sync", "async"]


def listen_keys(server: WebSocketTestServer) -> Any:
    """A provider of ``/ws/<listen key>`` URLs, a new key for every call (as Binance's REST API
    would hand out)."""
    keys = itertools.count(1)
    return Recorder(lambda n: f"{server.url}/ws/key{next(keys):020d}")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_url_provider_is_asked_before_every_dial(kind: str) -> None:
    async with open_test_server() as server:
        provider = listen_keys(server)

        async def greet(client: ClientRecord) -> None:
            await server.send(client, "hello")  # a rotation's new connection warms up on it

        server.on_handshake(greet)
        ws = ManagedWebSocket(as_kind(kind, provider), **FAST)
        assert ws.url == "<url provider>"  # nothing dialled yet
        async with ws:
            with anyio.fail_after(WAIT):
                for connects in (1, 2):
                    await server.drop_clients()
                    await wait_until(lambda n=connects: ws.stats.connects > n and ws.is_connected)
                assert await ws.rotate()  # a rotation's new connection gets fresh ones too
            assert len(provider) == 4
            assert [c.path for c in server.clients] == [f"/ws/key{n:020d}" for n in range(1, 5)]
            # The listen key is a secret: masked wherever the URL shows.
            assert "key0000" not in ws.url
            assert "key0000" not in repr(ws)


@pytest.mark.parametrize("kind", KINDS)
async def test_a_headers_provider_is_asked_before_every_dial(kind: str) -> None:
    tokens = itertools.count(1)
    provider = Recorder(lambda n: {"Authorization": f"Bearer t{next(tokens)}"})
    async with (
        open_test_server() as server,
        ManagedWebSocket(server.url + "/ws", headers=as_kind(kind, provider), **FAST) as ws,
    ):
        with anyio.fail_after(WAIT):
            await server.drop_clients()
            await server.wait_for_handshakes(2)
            assert await ws.wait_connected()
    sent = [dict(c.request_headers)["authorization"] for c in server.clients]
    assert sent == ["Bearer t1", "Bearer t2"]


async def test_a_provider_that_raises_is_a_failed_attempt_with_its_secret_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async with open_test_server() as server:

        def flaky() -> str:
            nonlocal calls
            calls += 1
            if calls <= 2:  # the REST call for a token fails twice
                raise RuntimeError("GET https://api.example.com/token?apiKey=s3cret: 503")
            return server.url + "/ws"

        async with ManagedWebSocket(flaky, **FAST) as ws:
            assert ws.is_connected
            assert ws.stats.reconnect_attempts == 2  # backoff, like refused dials
    assert calls == 3
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 2
    assert all("the url provider raised RuntimeError" in text for text in failures)
    assert "s3cret" not in caplog.text


async def test_a_provider_that_always_raises_ends_in_reconnect_error() -> None:
    def broken() -> str:
        raise OSError("no route to the token service")

    ws = ManagedWebSocket(broken, **{**FAST, "max_reconnect_attempts": 2})
    with anyio.fail_after(WAIT), pytest.raises(WebSocketReconnectError) as caught:
        async with ws:
            pass
    assert "no route to the token service" in str(caught.value.last_error)


@pytest.mark.parametrize("status", [401, 403])
async def test_401_and_403_are_retried_when_credentials_come_from_a_provider(status: int) -> None:
    async with open_test_server() as server:
        server.refuse_handshakes(status)  # the first token was stale
        async with ManagedWebSocket(listen_keys(server), **FAST) as ws:
            assert ws.is_connected
        assert len(server.clients) == 2
        # With a fixed URL the same refusal is final: no retry can fix it.
        server.refuse_handshakes(status)
        with anyio.fail_after(WAIT), pytest.raises(WebSocketHandshakeError):
            async with ManagedWebSocket(server.url + "/ws", **FAST):
                pass
        assert len(server.clients) == 3


async def test_a_provider_returning_garbage_is_a_failed_attempt() -> None:
    answers = iter([42, "http://not-a-websocket/", None])

    async with open_test_server() as server:

        def provider() -> Any:
            answer = next(answers, None)
            return server.url + "/ws" if answer is None else answer

        async with ManagedWebSocket(provider, **FAST) as ws:
            assert ws.is_connected
            assert ws.stats.reconnect_attempts == 2


# -- max_silence -----------------------------------------------------------------------------------


async def test_a_feed_that_answers_pings_but_sends_no_data_is_reconnected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="managed_websocket")
    reasons = Recorder()
    async with open_test_server(echo=False) as server:
        ws = ManagedWebSocket(
            server.url + "/ws",
            max_silence=0.3,
            ping_interval=0.05,
            ping_timeout=1.0,
            on_disconnect=reasons,
            **FAST,
        )
        async with ws:
            with anyio.fail_after(WAIT):
                started = anyio.current_time()
                await reasons.wait(1)
                silent_for = anyio.current_time() - started
                await server.wait_for_handshakes(2)
            assert ws.latency is not None  # the keepalive was answered all along
    assert reasons.args[0] == (DisconnectReason.DATA_TIMEOUT,)
    assert DisconnectReason.DATA_TIMEOUT.is_reactive
    assert 0.3 <= silent_for <= 0.3 + 0.5
    assert server.clients[0].pings_received >= 3
    assert "no data message within 0.3 s" in caplog.text


async def test_data_keeps_the_watchdog_quiet_and_a_full_queue_is_not_silence() -> None:
    async with open_test_server(echo=False) as server:
        # max_silence five times the gap between messages: a loaded machine may stretch a
        # 0.1 s sleep, and at 0.2 s (twice the gap) the test failed once under load.
        ws = ManagedWebSocket(
            server.url + "/ws", max_silence=0.5, queue_size=2, ping_interval=None, **FAST
        )
        async with ws:
            with anyio.fail_after(WAIT):
                for n in range(6):  # data every 0.1 s
                    await server.broadcast(f"m{n}")
                    await anyio.sleep(0.1)
                # Nobody has read: the queue is full, the receive loop waits ("block"), and
                # the socket holds the rest. Our silence, not the server's: twice max_silence.
                await anyio.sleep(1.0)
                assert ws.stats.disconnects == 0
                assert [await ws.receive() for _ in range(6)] == [f"m{n}" for n in range(6)]
        assert len(server.clients) == 1
