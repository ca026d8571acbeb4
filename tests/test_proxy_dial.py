"""Proxy dialing without sockets: proxy URLs, the environment (``wss_proxy``... ``no_proxy``),
the HTTP CONNECT request and the reading of its answer, and what the manager retries."""

from __future__ import annotations

import base64

import h11
import pytest

from managed_websocket import WebSocketHandshakeError, WebSocketProxyError
from managed_websocket._manager._supervisor import _is_fatal
from managed_websocket._proxy_dial import (
    ProxyURL,
    connect_request,
    parse_proxy_url,
    proxy_from_environment,
    read_connect_response,
)
from managed_websocket._settings import resolve_settings
from managed_websocket._url import parse_ws_url

WSS = parse_ws_url("wss://feed.example.com/ws")
WS = parse_ws_url("ws://feed.example.com:8080/ws")


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port", "user", "password"),
    [
        ("http://proxy:3128", "http", "proxy", 3128, None, None),
        ("http://proxy", "http", "proxy", 80, None, None),
        ("https://proxy", "https", "proxy", 443, None, None),
        ("socks5://u:p%40ss@10.0.0.1", "socks5", "10.0.0.1", 1080, "u", "p@ss"),
        ("SOCKS5H://[::1]:9050", "socks5h", "::1", 9050, None, None),
        ("socks4://proxy:1081", "socks4", "proxy", 1081, None, None),
    ],
)
def test_proxy_urls(
    url: str, scheme: str, host: str, port: int, user: str | None, password: str | None
) -> None:
    proxy = parse_proxy_url(url)
    assert (proxy.scheme, proxy.host, proxy.port) == (scheme, host, port)
    assert (proxy.username, proxy.password) == (user, password)


@pytest.mark.parametrize(
    "url", ["ftp://proxy", "proxy:3128", "http://", "http://u:s3cret@proxy:99999", "ws://p"]
)
def test_unusable_proxy_urls_are_refused_without_showing_secrets(url: str) -> None:
    with pytest.raises(ValueError, match="invalid proxy URL") as exc_info:
        parse_proxy_url(url)
    assert "s3cret" not in str(exc_info.value)


def test_credentials_never_show() -> None:
    proxy = parse_proxy_url("http://user:s3cret@proxy:3128")
    assert "s3cret" not in str(proxy)
    assert "s3cret" not in repr(proxy)
    settings = resolve_settings({"proxy": "http://user:s3cret@proxy:3128"})
    assert isinstance(settings.proxy, ProxyURL)
    assert "s3cret" not in repr(settings)
    error = WebSocketProxyError(
        f"proxy {proxy} refused", proxy=proxy.raw, url="wss://x/?token=abc", status_code=407
    )
    assert "s3cret" not in str(error)
    assert "s3cret" not in repr(error)
    assert "s3cret" not in error.proxy
    assert "abc" not in str(error)


def test_the_proxy_option() -> None:
    assert resolve_settings({}).proxy is True  # not given: the environment
    assert resolve_settings({"proxy": None}).proxy is None
    with pytest.raises(TypeError):
        resolve_settings({"proxy": 3128})
    with pytest.raises(TypeError):
        resolve_settings({"proxy": False})
    with pytest.raises(ValueError, match="scheme"):
        resolve_settings({"proxy": "ftp://proxy"})


@pytest.mark.parametrize(
    ("env", "target", "expected"),
    [
        ({}, WSS, None),
        ({"wss_proxy": "http://a"}, WSS, "http://a"),
        ({"wss_proxy": "http://a", "https_proxy": "http://b"}, WSS, "http://a"),
        ({"https_proxy": "http://b", "http_proxy": "http://c"}, WSS, "http://b"),
        ({"HTTPS_PROXY": "http://B"}, WSS, "http://B"),
        ({"https_proxy": "http://b", "HTTPS_PROXY": "http://B"}, WSS, "http://b"),
        ({"http_proxy": "http://c"}, WSS, None),  # a secure target is not sent to http_proxy
        ({"ws_proxy": "socks5://d", "http_proxy": "http://c"}, WS, "socks5://d"),
        ({"http_proxy": "http://c"}, WS, "http://c"),
        ({"wss_proxy": "http://a", "https_proxy": "http://b"}, WS, None),
        ({"http_proxy": "  "}, WS, None),
    ],
)
def test_the_environment_like_websockets(
    env: dict[str, str], target: object, expected: str | None
) -> None:
    assert proxy_from_environment(target, env) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("no_proxy", "bypassed"),
    [
        ("", False),
        ("*", True),
        ("feed.example.com", True),
        ("example.com", True),
        (".example.com", True),
        ("ample.com", False),
        ("other.org, example.com", True),
        ("feed.example.com:443", True),
        ("feed.example.com:8443", False),
        ("FEED.EXAMPLE.COM", True),
    ],
)
def test_no_proxy(no_proxy: str, bypassed: bool) -> None:
    env = {"https_proxy": "http://proxy", "no_proxy": no_proxy}
    assert (proxy_from_environment(WSS, env) is None) == bypassed


@pytest.mark.parametrize(
    ("host", "no_proxy", "bypassed"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.0/8", True),
        ("10.1.2.3", "127.0.0.0/8", False),
        ("::1", "::1", True),
        ("::1", "[::1]:80", True),
        ("10.1.2.3", "example.com", False),
    ],
)
def test_no_proxy_addresses(host: str, no_proxy: str, bypassed: bool) -> None:
    target = parse_ws_url(f"ws://[{host}]/" if ":" in host else f"ws://{host}/")
    env = {"NO_PROXY": no_proxy, "HTTP_PROXY": "http://proxy"}
    assert (proxy_from_environment(target, env) is None) == bypassed


def test_connect_request_with_basic_credentials() -> None:
    _connection, request = connect_request(WSS, parse_proxy_url("http://us%3Aer:p%40ss@proxy"))
    lines = request.split(b"\r\n")
    assert lines[0] == b"CONNECT feed.example.com:443 HTTP/1.1"
    assert b"Host: feed.example.com:443" in lines
    assert b"Proxy-Authorization: Basic " + base64.b64encode(b"us:er:p@ss") in lines


def test_connect_request_without_credentials_and_to_an_ipv6_host() -> None:
    target = parse_ws_url("ws://[::1]:9000/")
    _connection, request = connect_request(target, parse_proxy_url("http://proxy"))
    assert request.startswith(b"CONNECT [::1]:9000 HTTP/1.1\r\n")
    assert b"proxy-authorization" not in request.lower()


def test_reading_the_connect_answer() -> None:
    connection, _request = connect_request(WSS, parse_proxy_url("http://proxy"))
    assert read_connect_response(connection, b"HTTP/1.1 200 Connection established\r\n") is None
    response = read_connect_response(connection, b"\r\n")
    assert response is not None
    assert response.status_code == 200
    refused, _request = connect_request(WSS, parse_proxy_url("http://proxy"))
    answer = (
        b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="x"\r\n'
    )
    response = read_connect_response(refused, answer + b"Content-Length: 0\r\n\r\n")
    assert response is not None
    assert response.status_code == 407


def test_a_proxy_that_closes_or_babbles() -> None:
    connection, _request = connect_request(WSS, parse_proxy_url("http://proxy"))
    with pytest.raises(h11.RemoteProtocolError):
        read_connect_response(connection, b"")
    connection, _request = connect_request(WSS, parse_proxy_url("http://proxy"))
    with pytest.raises(h11.RemoteProtocolError):
        read_connect_response(connection, b"SSH-2.0-OpenSSH\r\n\r\n")


@pytest.mark.parametrize(
    ("status", "fatal"),
    [
        (407, True),
        (403, True),
        (400, True),
        (408, False),
        (429, False),
        (502, False),
        (None, False),
    ],
)
def test_retried_by_the_rules_of_a_handshake_status(status: int | None, fatal: bool) -> None:
    error = WebSocketProxyError("refused", proxy="http://proxy", status_code=status)
    assert error.is_retryable is not fatal
    assert _is_fatal(error) is fatal
    # Fresh credentials from a url/headers provider are not the proxy's: 403 stays final.
    assert _is_fatal(error, refreshes_credentials=True) is fatal
    if status is not None:
        handshake = WebSocketHandshakeError(status, {})
        assert _is_fatal(handshake) is fatal


def test_a_socks_failure_says_itself_whether_to_retry() -> None:
    final = WebSocketProxyError("auth failed", proxy="socks5://p", retryable=False)
    assert _is_fatal(final)
    assert not _is_fatal(WebSocketProxyError("host unreachable", proxy="socks5://p"))
