from __future__ import annotations

import pytest

from managed_websocket._exceptions import WebSocketInvalidURLError
from managed_websocket._redact import MASK
from managed_websocket._url import WebSocketURL, parse_ws_url, with_basic_auth

MAYBE_PASSWORD = "it may be part of a password"


@pytest.mark.parametrize(
    ("url", "secure", "host", "port", "resource", "host_header"),
    [
        ("ws://example.com", False, "example.com", 80, "/", "example.com"),
        ("wss://example.com", True, "example.com", 443, "/", "example.com"),
        ("ws://example.com:80/", False, "example.com", 80, "/", "example.com"),
        ("wss://example.com:443/", True, "example.com", 443, "/", "example.com"),
        ("ws://example.com:443/", False, "example.com", 443, "/", "example.com:443"),
        ("wss://example.com:9443/ws", True, "example.com", 9443, "/ws", "example.com:9443"),
        ("ws://127.0.0.1:8765/feed", False, "127.0.0.1", 8765, "/feed", "127.0.0.1:8765"),
        ("ws://[::1]:9000/x?y=1", False, "::1", 9000, "/x?y=1", "[::1]:9000"),
        ("wss://[2001:db8::1]/", True, "2001:db8::1", 443, "/", "[2001:db8::1]"),
        ("ws://h/a/b?c=1&d=2", False, "h", 80, "/a/b?c=1&d=2", "h"),
        ("ws://h?x=1", False, "h", 80, "/?x=1", "h"),
        ("ws://h:/", False, "h", 80, "/", "h"),  # empty port: the default
        ("WSS://Example.COM/Path", True, "example.com", 443, "/Path", "example.com"),
        ("ws://h:65535", False, "h", 65535, "/", "h:65535"),
    ],
)
def test_parse_ws_url(
    url: str, secure: bool, host: str, port: int, resource: str, host_header: str
) -> None:
    parsed = parse_ws_url(url)
    assert parsed == WebSocketURL(raw=url, secure=secure, host=host, port=port, resource=resource)
    assert parsed.host_header == host_header


def test_credentials_are_kept_for_the_handshake_but_masked_when_shown() -> None:
    parsed = parse_ws_url("wss://user:hunter2@h/ws?token=s3cret")
    assert parsed.raw == "wss://user:hunter2@h/ws?token=s3cret"
    assert parsed.host == "h"
    assert parsed.resource == "/ws?token=s3cret"
    assert str(parsed) == "wss://***@h/ws?token=***"
    assert repr(parsed) == "WebSocketURL('wss://***@h/ws?token=***')"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://h/", "scheme must be ws:// or wss://"),
        ("https://h/", "scheme must be ws:// or wss://"),
        ("h/ws", "scheme must be ws:// or wss://"),
        ("", "scheme must be ws:// or wss://"),
        ("ws://", "URL has no host"),
        ("ws:///x", "URL has no host"),
        ("ws://:80/", "URL has no host"),
        ("ws://user@/", "URL has no host"),
        ("ws://h:99999", "port '99999' is out of range: it must be from 1 to 65535"),
        ("ws://u@h:abc", "port 'abc' is not a number from 1 to 65535"),
        # Without an "@" before it, a non-number port may be a password cut short by a "/":
        # the masked URL shows it as ***, and so does the message.
        (
            "ws://h:abc",
            f"the port (shown as {MASK}: {MAYBE_PASSWORD}) is not a number from 1 to 65535",
        ),
        (
            "ws://h:-1",
            f"the port (shown as {MASK}: {MAYBE_PASSWORD}) is not a number from 1 to 65535",
        ),
        ("ws://u%3Ax:p@h/", "the user name in the URL cannot contain ':' (%3A)"),
        ("ws://h:0", "port 0 is not a valid port"),
        ("ws://h /x", "URL contains whitespace or control characters"),
        (" ws://h/", "URL contains whitespace or control characters"),
        ("ws://h/x\n", "URL contains whitespace or control characters"),
        ("ws://h/\x00", "URL contains whitespace or control characters"),
        ("ws://h/\x7f", "URL contains whitespace or control characters"),
        ("ws://h/x#frag", "WebSocket URLs cannot have a fragment"),
        ("ws://[::1/x", "malformed URL (bad IPv6 brackets or netloc)"),
    ],
)
def test_invalid_urls(url: str, problem: str) -> None:
    with pytest.raises(WebSocketInvalidURLError) as info:
        parse_ws_url(url)
    assert info.value.problem == problem
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("ws://user:hunter2@h:abc/?token=s3cret", ["hunter2", "s3cret"]),
        ("http://user:hunter2@h/?token=s3cret", ["hunter2", "s3cret"]),
        ("ws://user:hunter2@h/?token=s3cret#x", ["hunter2", "s3cret"]),
        ("ws://user:hunter2@h /?token=s3cret", ["hunter2", "s3cret"]),
        ("ws://user:hunter2@[::1/?token=s3cret", ["hunter2", "s3cret"]),
        ("wss://h/feed#access_token=s3cret", ["s3cret"]),
        # urlsplit's own message would quote the netloc, password included.
        ("wss://user:hunter2\uff03x@h/", ["hunter2"]),
        # An unescaped "/" in the password: urlsplit sees "hun" as the port.
        ("wss://user:hun/ter2@h/feed", ["hun", "ter2"]),
    ],
)
def test_invalid_url_errors_never_show_secrets(url: str, secrets: list[str]) -> None:
    with pytest.raises(WebSocketInvalidURLError) as info:
        parse_ws_url(url)
    for text in (str(info.value), repr(info.value), info.value.url):
        for secret in secrets:
            assert secret not in text
    # Nor in a chained exception: urlsplit's ValueError quotes the netloc.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_invalid_url_message() -> None:
    with pytest.raises(WebSocketInvalidURLError) as info:
        parse_ws_url("ws://user:hunter2@h:abc/?token=s3cret")
    assert str(info.value) == (
        "invalid WebSocket URL 'ws://***@h:abc/?token=***': port 'abc' is not a number from 1 to 65535"
    )


@pytest.mark.parametrize("url", [None, b"ws://h/", 42])
def test_non_str_url_is_a_type_error(url: object) -> None:
    with pytest.raises(TypeError, match="^url must be a str, not "):
        parse_ws_url(url)  # type: ignore[arg-type]


def test_a_masked_bad_port_is_named_without_showing_it() -> None:
    with pytest.raises(WebSocketInvalidURLError) as info:
        parse_ws_url("wss://user:hun/ter2@h/feed")
    assert "the port (shown as ***" in str(info.value)
    assert "hun" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://h/", None),
        ("ws://alice:s3cret@h/", "alice:s3cret"),
        ("ws://alice@h/", "alice:"),  # no password: an empty one (RFC 7617 allows it)
        ("ws://al%40ice:p%3Ass%20w%C3%B6rd@h/", "al@ice:p:ss w\u00f6rd"),  # escapes decoded
    ],
)
def test_userinfo_becomes_http_basic_credentials(url: str, expected: str | None) -> None:
    import base64

    auth = parse_ws_url(url).basic_auth
    if expected is None:
        assert auth is None
        return
    assert auth is not None
    scheme, _, token = auth.partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(token).decode() == expected


def test_an_explicit_authorization_header_wins_over_the_url() -> None:
    target = parse_ws_url("ws://alice:s3cret@h/")
    assert with_basic_auth(target, [("X-A", "1")]) == [
        ("X-A", "1"),
        ("Authorization", target.basic_auth),
    ]
    explicit = [("authorization", "Bearer t0ken")]
    assert with_basic_auth(target, explicit) == explicit
    assert with_basic_auth(parse_ws_url("ws://h/"), [("X-A", "1")]) == [("X-A", "1")]
