"""Opening a connection that cannot work: each failure comes out as its own typed error.

DNS failure, refused TCP, invalid URLs (refused before any I/O), secrets kept out of error
messages, and TLS certificate verification (with a private CA from ``trustme``) against the
scripted test server's ``wss://``.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Iterator

import anyio
import pytest
import trustme

from managed_websocket import (
    ManagedWebSocket,
    WebSocketClosedError,
    WebSocketConnectionError,
    WebSocketConnectionRefusedError,
    WebSocketDNSError,
    WebSocketError,
    WebSocketHandshakeError,
    WebSocketInvalidURLError,
    WebSocketReconnectError,
    WebSocketTLSError,
    connect_websocket,
    open_websocket_connection,
)
from managed_websocket.testing import WebSocketTestServer, open_test_server

pytestmark = pytest.mark.anyio

TIMEOUT = 10

SECRETS = ("hunter2", "s3cret")


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nobody listens on (it was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and every exception it was raised from or during."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


# Name resolution and TCP


async def test_unresolvable_host_raises_dns_error() -> None:
    # ".invalid" never resolves (RFC 6761), so this needs no network.
    with anyio.fail_after(TIMEOUT), pytest.raises(WebSocketDNSError) as exc_info:
        await open_websocket_connection("ws://nonexistent.invalid/")

    exc = exc_info.value
    assert str(exc) == "cannot resolve host 'nonexistent.invalid' (ws://nonexistent.invalid/)"
    assert exc.url == "ws://nonexistent.invalid/"
    assert isinstance(exc.last_error, socket.gaierror)
    assert exc.__cause__ is exc.last_error
    assert isinstance(exc, WebSocketConnectionError)
    assert isinstance(exc, ConnectionError)


async def test_refused_connection(closed_port: int) -> None:
    with anyio.fail_after(TIMEOUT), pytest.raises(WebSocketConnectionRefusedError) as exc_info:
        await open_websocket_connection(f"ws://127.0.0.1:{closed_port}/feed")

    exc = exc_info.value
    # Each thing once: what happened, then the URL (which names the address).
    assert str(exc) == f"connection refused (ws://127.0.0.1:{closed_port}/feed)"
    assert exc.message == "connection refused"
    assert exc.url == f"ws://127.0.0.1:{closed_port}/feed"
    assert isinstance(exc.last_error, OSError)
    assert exc.__cause__ is exc.last_error
    assert any(isinstance(e, ConnectionRefusedError) for e in _chain(exc))


async def test_refused_connection_through_the_context_manager(closed_port: int) -> None:
    entered = False
    with anyio.fail_after(TIMEOUT), pytest.raises(WebSocketConnectionRefusedError):
        async with connect_websocket(f"ws://127.0.0.1:{closed_port}/"):
            entered = True
    assert not entered


async def test_refused_error_does_not_show_credentials_or_tokens(closed_port: int) -> None:
    url = f"ws://user:hunter2@127.0.0.1:{closed_port}/ws/?token=s3cret"
    with anyio.fail_after(TIMEOUT), pytest.raises(WebSocketConnectionRefusedError) as exc_info:
        await open_websocket_connection(url)

    exc = exc_info.value
    assert exc.url == f"ws://***@127.0.0.1:{closed_port}/ws/?token=***"
    assert str(exc).endswith(f" (ws://***@127.0.0.1:{closed_port}/ws/?token=***)")
    for secret in SECRETS:
        assert secret not in str(exc)
        assert secret not in repr(exc)
        # Nor anywhere in the chain of causes.
        for error in _chain(exc):
            assert secret not in str(error)
            assert secret not in repr(error)


# Invalid URLs: refused before any I/O


INVALID_URLS = [
    ("http://example.com/", "scheme must be ws:// or wss://"),
    ("https://example.com/", "scheme must be ws:// or wss://"),
    ("example.com", "scheme must be ws:// or wss://"),
    ("", "scheme must be ws:// or wss://"),
    ("ws://", "URL has no host"),
    ("ws:///path", "URL has no host"),
    ("ws://example.com:99999/", "port '99999' is out of range: it must be from 1 to 65535"),
    # No "@" before it: it may be a password cut short, so it is named but not shown.
    (
        "ws://example.com:http/",
        "the port (shown as ***: it may be part of a password) is not a number from 1 to 65535",
    ),
    ("ws://example.com:0/", "port 0 is not a valid port"),
    ("ws://exa mple.com/", "URL contains whitespace or control characters"),
    ("ws://example.com/a b", "URL contains whitespace or control characters"),
    (" ws://example.com/", "URL contains whitespace or control characters"),
    ("ws://example.com/\r\nX-Injected: 1", "URL contains whitespace or control characters"),
    ("ws://[::1/", "malformed URL (bad IPv6 brackets or netloc)"),
    ("ws://example.com/#top", "WebSocket URLs cannot have a fragment"),
]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to open a TCP connection."""

    async def connect_tcp(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"connect_tcp called with {args!r}")

    monkeypatch.setattr(anyio, "connect_tcp", connect_tcp)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(("url", "problem"), INVALID_URLS)
async def test_invalid_url_raises_before_any_io(url: str, problem: str) -> None:
    with anyio.fail_after(TIMEOUT), pytest.raises(WebSocketInvalidURLError) as exc_info:
        await open_websocket_connection(url)

    exc = exc_info.value
    assert exc.problem == problem
    assert str(exc) == f"invalid WebSocket URL {exc.url!r}: {problem}"
    assert isinstance(exc, ValueError)
    assert isinstance(exc, WebSocketError)


@pytest.mark.usefixtures("no_network")
async def test_invalid_url_raises_from_the_context_manager() -> None:
    entered = False
    with anyio.fail_after(TIMEOUT), pytest.raises(WebSocketInvalidURLError) as exc_info:
        async with connect_websocket("http://example.com/"):
            entered = True
    assert not entered
    assert exc_info.value.problem == "scheme must be ws:// or wss://"


@pytest.mark.usefixtures("no_network")
async def test_invalid_url_error_does_not_show_credentials_or_tokens() -> None:
    with anyio.fail_after(TIMEOUT), pytest.raises(WebSocketInvalidURLError) as exc_info:
        await open_websocket_connection("http://user:hunter2@example.com/ws/?token=s3cret")

    exc = exc_info.value
    assert str(exc) == (
        "invalid WebSocket URL 'http://***@example.com/ws/?token=***': "
        "scheme must be ws:// or wss://"
    )
    for secret in SECRETS:
        assert secret not in repr(exc)


@pytest.mark.usefixtures("no_network")
async def test_non_string_url_is_a_type_error() -> None:
    with (
        anyio.fail_after(TIMEOUT),
        pytest.raises(TypeError, match=r"^url must be a str, not bytes$"),
    ):
        await open_websocket_connection(b"ws://example.com/")  # type: ignore[arg-type]


# TLS


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_tls_verified_against_the_trusted_ca(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext, host: str
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server(ssl_context=server_ssl_context) as server:
            url = f"wss://{host}:{server.port}/secure"
            async with connect_websocket(url, ssl_context=client_ssl_context) as conn:
                await conn.send("over tls")
                assert await conn.receive() == "over tls"
                await conn.send(b"\x00" * 100_000)
                assert await conn.receive() == b"\x00" * 100_000
            await server.clients[0].wait_closed()

    record = server.clients[0]
    assert record.path == "/secure"
    assert record.messages == ["over tls", b"\x00" * 100_000]
    assert record.close_code == 1000
    assert record.ended_by == "client_close"
    assert str(conn.url) == url


async def test_tls_certificate_from_another_ca_fails(
    server_ssl_context: ssl.SSLContext,
) -> None:
    other = ssl.create_default_context()
    trustme.CA().configure_trust(other)
    with anyio.fail_after(TIMEOUT):
        async with open_test_server(ssl_context=server_ssl_context) as server:
            with pytest.raises(WebSocketTLSError) as exc_info:
                await open_websocket_connection(f"{server.url}/", ssl_context=other)
            await server.clients[0].wait_closed()

    exc = exc_info.value
    assert isinstance(exc.last_error, ssl.SSLCertVerificationError)
    assert exc.__cause__ is exc.last_error
    assert exc.message.startswith("TLS handshake failed (SSLCertVerificationError: ")
    assert "certificate verify failed" in exc.message
    assert str(exc) == f"{exc.message} ({server.url}/)"
    assert isinstance(exc, WebSocketConnectionError)
    # The server never saw an upgrade request.
    assert server.clients[0].path == ""
    assert not server.clients[0].handshake_completed


async def test_tls_default_context_does_not_trust_a_private_ca(
    server_ssl_context: ssl.SSLContext,
) -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server(ssl_context=server_ssl_context) as server:
            with pytest.raises(WebSocketTLSError) as exc_info:
                await open_websocket_connection(f"{server.url}/")  # system trust store
            await server.clients[0].wait_closed()

    assert isinstance(exc_info.value.last_error, ssl.SSLCertVerificationError)
    assert "may not speak TLS" not in str(exc_info.value)  # no plain-server hint for this


async def test_tls_hostname_mismatch_fails(
    ca: trustme.CA, client_ssl_context: ssl.SSLContext
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("example.org").configure_cert(context)  # trusted CA, wrong name
    with anyio.fail_after(TIMEOUT):
        async with open_test_server(ssl_context=context) as server:
            with pytest.raises(WebSocketTLSError) as exc_info:
                await open_websocket_connection(f"{server.url}/", ssl_context=client_ssl_context)
            await server.clients[0].wait_closed()

    last_error = exc_info.value.last_error
    assert isinstance(last_error, ssl.SSLCertVerificationError)
    assert last_error.verify_message == (
        "IP address mismatch, certificate is not valid for '127.0.0.1'."
    )


async def test_tls_to_a_plain_server_fails(client_ssl_context: ssl.SSLContext) -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            url = f"wss://127.0.0.1:{server.port}/"
            with pytest.raises(WebSocketTLSError) as exc_info:
                await open_websocket_connection(url, ssl_context=client_ssl_context)
            await server.clients[0].wait_closed()

    message = exc_info.value.message
    assert message.startswith("TLS handshake failed (")
    assert message.endswith("; the server may not speak TLS (try ws:// instead of wss://)")


# Refusals and closes


async def test_http_200_to_the_upgrade_says_not_a_websocket_endpoint() -> None:
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            server.refuse_handshakes(200, body=b"<html>hello</html>")
            with pytest.raises(WebSocketHandshakeError) as exc_info:
                await open_websocket_connection(f"{server.url}/api")

    exc = exc_info.value
    assert exc.status_code == 200
    assert exc.message == "server answered HTTP 200 without upgrading: not a WebSocket endpoint"


def test_one_attempt_is_singular() -> None:
    last = WebSocketConnectionRefusedError(
        "connection refused", url="ws://127.0.0.1:9/?token=s3cret"
    )
    one = WebSocketReconnectError(1, last)
    assert str(one) == (
        "gave up reconnecting after 1 attempt: connection refused (ws://127.0.0.1:9/?token=***)"
    )
    assert str(WebSocketReconnectError(2)) == "gave up reconnecting after 2 attempts"


def test_the_close_reason_is_in_the_closed_error_message_quoted_and_masked() -> None:
    error = WebSocketClosedError("connection closed by the server", code=4001, reason="banned")
    assert str(error) == "connection closed by the server (code 4001, reason 'banned')"
    secret = WebSocketClosedError(code=4000, reason="go to wss://h/?token=s3cret\r\nX")
    assert "s3cret" not in str(secret)
    assert "token=***" in str(secret)
    assert "\n" not in str(secret)  # escaped: one line in a log
    assert str(WebSocketClosedError(code=1006)) == "connection closed (code 1006)"


async def test_the_close_reason_is_in_the_disconnect_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="managed_websocket")
    with anyio.fail_after(TIMEOUT):
        async with open_test_server() as server:
            with pytest.raises(WebSocketReconnectError):
                await _read_until_closed(server, "policy: too many streams")

    lines = [r.getMessage() for r in caplog.records if "disconnected from" in r.getMessage()]
    expected = (
        f"= disconnected from {server.url}: SERVER_CLOSED (code 1008, "
        "reason 'policy: too many streams')"
    )
    assert lines == [expected]


async def _read_until_closed(server: WebSocketTestServer, reason: str) -> None:
    """Connect, have the server close with 1008 and ``reason``, read until the manager gives up."""
    async with ManagedWebSocket(server.url, max_reconnect_attempts=0) as ws:
        await server.close_clients(1008, reason)
        async for _ in ws:
            pass
