"""Through real proxy servers on 127.0.0.1, on both backends: pproxy (HTTP CONNECT, SOCKS5,
SOCKS4, with and without credentials, and HTTP over TLS), and a hand-written HTTP proxy that
refuses. The target is the test server (``managed_websocket.testing``), plain or TLS.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
from anyio.streams.buffered import BufferedByteStream

from conftest import PASSWORD, USER, Proxies, free_port
from managed_websocket import (
    WebSocketConnectionError,
    WebSocketProxyError,
    WebSocketReconnectError,
    connect_websocket,
    open_managed_websocket,
    open_websocket_connection,
)
from managed_websocket._manager._supervisor import _is_fatal
from managed_websocket.testing import open_fault_proxy, open_test_server

pytestmark = pytest.mark.anyio

TIMEOUT = 20


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ws_proxy", "wss_proxy", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


async def _echo_through(url: str, proxy: str | None, **options: object) -> str:
    async with connect_websocket(url, proxy=proxy, **options) as conn:  # type: ignore[arg-type]
        await conn.send("through the proxy")
        reply = await conn.receive()
        assert isinstance(reply, str)
        return reply


@pytest.mark.parametrize(
    ("kind", "credentials"),
    [
        ("http", False),
        ("http_auth", True),
        ("socks5", False),
        ("socks5_auth", True),
        ("socks4", False),
    ],
)
async def test_ws_through_each_kind_of_proxy(
    proxies: Proxies, kind: str, credentials: bool
) -> None:
    proxy = getattr(proxies, kind)
    if credentials:
        proxy = proxies.with_credentials(proxy)
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            assert await _echo_through(f"{server.url}/feed", proxy) == "through the proxy"
    assert server.clients[0].path == "/feed"
    assert f":{server.port}" in proxies.log.read_text()  # the proxy saw the target


async def test_socks5h_lets_the_proxy_resolve_the_name(proxies: Proxies) -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            url = f"ws://localhost:{server.port}/"
            proxy = proxies.socks5.replace("socks5://", "socks5h://")
            assert await _echo_through(url, proxy) == "through the proxy"
    assert f"localhost:{server.port}" in proxies.log.read_text()


async def test_wss_through_an_http_proxy(proxies: Proxies) -> None:
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    proxies.ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    proxies.ca.configure_trust(client_tls)
    with anyio.fail_after(TIMEOUT):
        async with open_test_server(ssl_context=server_tls) as server:
            assert server.url.startswith("wss://")
            reply = await _echo_through(server.url, proxies.http, ssl_context=client_tls)
    assert reply == "through the proxy"


async def test_wss_through_an_https_proxy(proxies: Proxies) -> None:
    """TLS to the proxy, then TLS to the target inside it."""
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    proxies.ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    proxies.ca.configure_trust(client_tls)  # one trust store verifies the proxy and the target
    with anyio.fail_after(TIMEOUT):
        async with open_test_server(ssl_context=server_tls) as server:
            reply = await _echo_through(server.url, proxies.https, ssl_context=client_tls)
    assert reply == "through the proxy"


async def test_an_https_proxy_with_an_untrusted_certificate_is_final(proxies: Proxies) -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            with pytest.raises(WebSocketProxyError) as exc_info:
                await open_websocket_connection(server.url, proxy=proxies.https)
    assert isinstance(exc_info.value.last_error, ssl.SSLCertVerificationError)
    assert not exc_info.value.is_retryable


async def test_missing_credentials_are_a_final_407(proxies: Proxies) -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            with pytest.raises(WebSocketProxyError) as exc_info:
                await open_websocket_connection(server.url, proxy=proxies.http_auth)
    error = exc_info.value
    assert error.status_code == 407
    assert not error.is_retryable
    assert str(error) == (
        f"proxy {proxies.http_auth} refused the tunnel with HTTP 407 ({server.url})"
    )
    assert server.clients == []


@pytest.mark.parametrize("kind", ["http_auth", "socks5_auth"])
async def test_wrong_credentials_are_refused_and_never_shown(proxies: Proxies, kind: str) -> None:
    proxy = proxies.with_credentials(getattr(proxies, kind), password="wrong-pw-123")
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            with pytest.raises(WebSocketProxyError) as exc_info:
                await open_websocket_connection(server.url, proxy=proxy)
    error = exc_info.value
    # pproxy's SOCKS5 closes the connection instead of replying "authentication failed": that
    # cannot be told from a dropped connection, so it is retried (see the hand-written one below).
    assert error.is_retryable is (kind == "socks5_auth")
    for shown in (str(error), repr(error), error.proxy, error.message):
        assert "wrong-pw-123" not in shown
        assert USER not in shown


@asynccontextmanager
async def serving_on_loopback(
    handle: Callable[[anyio.abc.SocketStream], Awaitable[None]],
) -> AsyncIterator[int]:
    """A TCP listener on 127.0.0.1 that runs ``handle`` for each client; yields its port."""
    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(listener.serve, handle)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


@pytest.fixture
async def refusing_socks() -> AsyncIterator[tuple[str, list[str]]]:
    """A SOCKS5 server by hand: ``("auth", ...)`` fails the credentials, a number is the reply
    code to the CONNECT (2: not allowed by ruleset, 4: host unreachable)."""
    plan: list[str] = []

    async def refuse(client: anyio.abc.SocketStream) -> None:
        async with client:
            with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                await _socks_refusal(BufferedByteStream(client), plan.pop(0))

    async def _socks_refusal(stream: BufferedByteStream, step: str) -> None:
        _version, count = await stream.receive_exactly(2)
        await stream.receive_exactly(count)
        await stream.send(b"\x05\x02")  # username/password
        _version, length = await stream.receive_exactly(2)
        await stream.receive_exactly(length)
        (length,) = await stream.receive_exactly(1)
        await stream.receive_exactly(length)
        if step == "auth":
            await stream.send(b"\x01\x01")
            return
        await stream.send(b"\x01\x00")
        await stream.receive(1024)  # the CONNECT request
        await stream.send(bytes([5, int(step), 0, 1, 0, 0, 0, 0, 0, 0]))

    async with serving_on_loopback(refuse) as port:
        yield f"socks5://{USER}:{PASSWORD}@127.0.0.1:{port}", plan


@pytest.mark.parametrize(("step", "retryable"), [("auth", False), ("2", False), ("4", True)])
async def test_a_refusing_socks_proxy(
    refusing_socks: tuple[str, list[str]], step: str, retryable: bool
) -> None:
    url, plan = refusing_socks
    plan.append(step)
    with anyio.fail_after(TIMEOUT), pytest.raises(WebSocketProxyError) as exc_info:
        await open_websocket_connection("ws://127.0.0.1:9/", proxy=url)
    assert exc_info.value.is_retryable is retryable
    assert PASSWORD not in str(exc_info.value)


async def test_a_socks_proxy_that_cannot_reach_the_target_is_retried(proxies: Proxies) -> None:
    # pproxy grants the SOCKS CONNECT before it dials, then closes: the handshake sees the end.
    port = free_port()  # nothing listens there
    with anyio.fail_after(TIMEOUT), pytest.raises(WebSocketConnectionError) as exc_info:
        await open_websocket_connection(f"ws://127.0.0.1:{port}/", proxy=proxies.socks5)
    assert str(exc_info.value).startswith("connection closed during the WebSocket handshake")
    assert not _is_fatal(exc_info.value)


async def test_an_unreachable_proxy_is_retried() -> None:
    port = free_port()
    with anyio.fail_after(TIMEOUT), pytest.raises(WebSocketProxyError) as exc_info:
        await open_websocket_connection(
            "ws://127.0.0.1:1/", proxy=f"http://u:s3cret@127.0.0.1:{port}"
        )
    assert exc_info.value.is_retryable
    assert "cannot connect to the proxy" in str(exc_info.value)
    assert "s3cret" not in str(exc_info.value)


# A proxy that refuses: written by hand, it answers every CONNECT with one status.


@pytest.fixture
async def refusing_proxy() -> AsyncIterator[tuple[str, list[int]]]:
    """``(url, statuses)``: append the status the next CONNECT gets."""
    statuses: list[int] = []

    async def refuse(client: anyio.abc.SocketStream) -> None:
        async with client:
            received = b""
            while b"\r\n\r\n" not in received:
                received += await client.receive()
            status = statuses.pop(0) if statuses else 403
            body = b"no tunnel for you"
            await client.send(
                f"HTTP/1.1 {status} Refused\r\nContent-Length: {len(body)}\r\n"
                f"Retry-After: 1\r\n\r\n".encode()
                + body
            )

    async with serving_on_loopback(refuse) as port:
        yield f"http://127.0.0.1:{port}", statuses


@pytest.mark.parametrize(("status", "retryable"), [(403, False), (503, True), (429, True)])
async def test_a_refusing_proxy(
    refusing_proxy: tuple[str, list[int]], status: int, retryable: bool
) -> None:
    url, statuses = refusing_proxy
    statuses.append(status)
    with anyio.fail_after(TIMEOUT), pytest.raises(WebSocketProxyError) as exc_info:
        await open_websocket_connection("wss://feed.example.com/", proxy=url)
    assert exc_info.value.status_code == status
    assert exc_info.value.headers["retry-after"] == "1"
    assert exc_info.value.is_retryable is retryable


async def test_the_manager_gives_up_at_once_on_a_403(
    refusing_proxy: tuple[str, list[int]],
) -> None:
    url, _statuses = refusing_proxy
    with anyio.fail_after(TIMEOUT), pytest.raises(WebSocketProxyError):
        async with open_managed_websocket("ws://feed.example.com/", proxy=url, reconnect_delay=0):
            pass


async def test_the_manager_retries_a_503(refusing_proxy: tuple[str, list[int]]) -> None:
    url, statuses = refusing_proxy
    statuses += [503, 503, 503]
    with anyio.fail_after(TIMEOUT), pytest.raises(WebSocketReconnectError) as exc_info:
        async with open_managed_websocket(
            "ws://feed.example.com/",
            proxy=url,
            reconnect_delay=0.01,
            max_reconnect_attempts=2,
            reconnect_jitter=0,
        ):
            pass
    assert isinstance(exc_info.value.last_error, WebSocketProxyError)
    assert exc_info.value.attempts == 2  # reconnect attempts, after the first dial
    assert statuses == []  # three CONNECTs reached the proxy


# The environment


async def test_the_environment_is_read_and_no_proxy_honoured(
    proxies: Proxies, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ws_proxy", proxies.http_auth)  # no credentials: 407 shows it was used
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            with pytest.raises(WebSocketProxyError):
                await open_websocket_connection(server.url)
            # proxy=None: no proxy, whatever the environment says.
            assert await _echo_through(server.url, None) == "through the proxy"
            monkeypatch.setenv("ws_proxy", proxies.with_credentials(proxies.http_auth))
            async with connect_websocket(server.url) as conn:
                await conn.send("via env")
                assert await conn.receive() == "via env"
            monkeypatch.setenv("ws_proxy", proxies.http_auth)
            monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
            async with connect_websocket(server.url) as conn:
                await conn.send("direct")
                assert await conn.receive() == "direct"
    assert len(server.clients) == 3


async def test_a_bad_proxy_url_in_the_environment_is_final(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WS_PROXY", "ftp://user:s3cret@proxy")
    with pytest.raises(WebSocketProxyError, match="from the environment") as exc_info:
        await open_websocket_connection("ws://127.0.0.1:1/")
    assert not exc_info.value.is_retryable
    assert "s3cret" not in str(exc_info.value)


# The manager through a proxy: reconnection, rotation, the fault proxy


async def test_reconnect_and_rotate_through_a_proxy_and_the_fault_proxy(proxies: Proxies) -> None:
    """client → pproxy (SOCKS5 or HTTP) → fault proxy → test server: a cut connection is
    replaced through the proxy, and so is a rotated one."""
    with anyio.fail_after(TIMEOUT):
        async with (
            open_test_server() as server,
            open_fault_proxy("127.0.0.1", server.port) as fault,
            open_managed_websocket(
                fault.url_for("/feed"),
                proxy=proxies.with_credentials(proxies.socks5_auth),
                decode=None,
                reconnect_delay=0.01,
                reconnect_jitter=0,
            ) as ws,
        ):
            await server.wait_for_handshakes(1)
            await server.broadcast("one")
            assert await ws.receive() == "one"
            await fault.cut()
            await server.wait_for_handshakes(2)
            await ws.wait_connected()
            await server.broadcast("two")
            assert await ws.receive() == "two"
            rotated: list[bool] = []

            async def rotate() -> None:
                rotated.append(await ws.rotate())

            async with anyio.create_task_group() as tg:
                tg.start_soon(rotate)
                await server.wait_for_handshakes(3)
                await server.broadcast("three")  # warms the new connection up
            assert rotated == [True]
            assert await ws.receive() == "three"
    assert len(server.clients) == 3
    assert fault.counters.connections_accepted >= 3
    assert f":{fault.port}" in proxies.log.read_text()
