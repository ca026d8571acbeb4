from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from managed_websocket._redact import mask_url, mask_urls_in

LISTEN_KEY = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("wss://user:hunter2@h.example/ws", "wss://***@h.example/ws"),
        ("wss://hunter2@h.example/ws", "wss://***@h.example/ws"),
        ("wss://user:p@ss@h.example:9443/", "wss://***@h.example:9443/"),  # "@" in the password
        ("wss://h/?token=s3cret", "wss://h/?token=***"),
        ("wss://h/?api_key=s3cret&x=1", "wss://h/?api_key=***&x=1"),
        ("wss://h/?signature=abc&timestamp=1", "wss://h/?signature=***&timestamp=1"),
        ("wss://h/?listenKey=abc", "wss://h/?listenKey=***"),
        ("wss://h/?password=pw", "wss://h/?password=***"),
        ("wss://h/?Authorization=Bearer%20x", "wss://h/?Authorization=***"),
        ("wss://h/?api%5Fkey=s3cret", "wss://h/?api%5Fkey=***"),  # percent-encoded name
        ("wss://h/?token", "wss://h/?token"),  # no value: nothing to hide
        ("wss://h/?streams=btcusdt@trade&id=1", "wss://h/?streams=btcusdt@trade&id=1"),
        ("wss://h/#access_token=s3cret", "wss://h/#access_token=***"),  # OAuth-style fragment
        ("wss://h/#section", "wss://h/#section"),
        (f"wss://stream.binance.com:9443/ws/{LISTEN_KEY}", "wss://stream.binance.com:9443/ws/***"),
        (
            "wss://stream.binance.com:9443/ws/btcusdt@trade",
            "wss://stream.binance.com:9443/ws/btcusdt@trade",
        ),
        ("wss://h/stream?streams=btcusdt@trade", "wss://h/stream?streams=btcusdt@trade"),
        ("wss://h/ws/btcusdt", "wss://h/ws/btcusdt"),  # short, no digits: a stream name
        ("wss://h/ws", "wss://h/ws"),
        ("ws://[::1]:9000/x?y=1", "ws://[::1]:9000/x?y=1"),
        (
            f"wss://u:pw@h/ws/{LISTEN_KEY}?token=t&a=b",
            "wss://***@h/ws/***?token=***&a=b",
        ),
        ("", ""),
    ],
)
def test_mask_url(url: str, expected: str) -> None:
    assert mask_url(url) == expected


@pytest.mark.parametrize(
    ("url", "secrets", "expected"),
    [
        # An unescaped "/", "?" or "#" in a password cuts the netloc short: the password's head
        # looks like a port, its tail lands in the path or query.
        ("wss://user:hun/ter2@h/feed", ["hun", "ter2"], "wss://user:***"),
        ("wss://user:hun?ter2@h/feed", ["hun", "ter2"], "wss://user:***"),
        ("wss://user:hun#ter2@h/feed", ["hun", "ter2"], "wss://user:***"),
        ("ws://h:abc/path", ["abc"], "ws://h:***/path"),
        # urlsplit cannot parse these at all (unclosed IPv6 bracket).
        ("ws://user:hunter2@[::1/x?token=s3cret", ["hunter2", "s3cret"], "ws://***@[::1/x"),
        (f"ws://[::1/ws/{LISTEN_KEY}?a=1", [LISTEN_KEY], "ws://[::1/ws/***"),
        ("ws://us\ner:hunter2@[::1/", ["hunter2"], "ws://***@[::1/"),
        ("ws://[::1/#access_token=s3cret", ["s3cret"], "ws://[::1/"),
    ],
)
def test_mask_url_malformed_urls_do_not_leak(url: str, secrets: list[str], expected: str) -> None:
    masked = mask_url(url)
    assert masked == expected
    for secret in secrets:
        assert secret not in masked


@pytest.mark.parametrize(
    "url",
    ["://", "@@@", "ws://", "ws://[", "http://[", "\x00\udcff", "?token=x", "ws://h:99999999999"],
)
def test_mask_url_never_raises_on_garbage(url: str) -> None:
    assert isinstance(mask_url(url), str)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"ws://u:p@h/?token=t", "ws://***@h/?token=***"),
        (bytearray(b"ws://h/\xff"), "ws://h/\ufffd"),
        (None, "None"),
        (42, "42"),
    ],
)
def test_mask_url_tolerates_non_str(value: object, expected: str) -> None:
    assert mask_url(value) == expected  # type: ignore[arg-type]


@given(st.text())
def test_mask_url_never_raises(url: str) -> None:
    assert isinstance(mask_url(url), str)


# "/", "?" and "#" end the authority (RFC 3986 section 3.2): in userinfo they must be
# percent-encoded, and "user:123/x@h" is a valid URL with port 123 and path "/x@h".
_USERINFO_TEXT = st.text(
    alphabet=st.characters(exclude_characters="@/?#", exclude_categories=["Cc", "Cs"]),
    min_size=4,
)


@given(user=_USERINFO_TEXT, password=_USERINFO_TEXT)
def test_mask_url_hides_any_userinfo(user: str, password: str) -> None:
    masked = mask_url(f"wss://{user}:{password}@example.com/ws?token=abcd")
    # The second form: a stray "[" or "]" makes urlsplit give up, and the query is dropped.
    assert masked in ("wss://***@example.com/ws?token=***", "wss://***@example.com/ws")


def test_urls_inside_a_message_are_masked() -> None:
    text = "GET https://api.example.com/token?apiKey=s3cret failed; retry wss://u:pw@h/ws/abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUV"
    masked = mask_urls_in(text)
    assert "s3cret" not in masked
    assert "pw" not in masked
    assert "abcdefghijklmnop" not in masked
    assert masked.startswith("GET https://api.example.com/token?apiKey=")
    assert "failed; retry wss://" in masked


def test_proxy_urls_in_text_are_masked() -> None:
    text = "via socks5h://bob:pw1@proxy:1080 and socks4://eve:pw2@p and https://ann:pw3@p"
    masked = mask_urls_in(text)
    assert "pw1" not in masked
    assert "pw2" not in masked
    assert "pw3" not in masked
    assert "socks5h://***@proxy:1080" in masked
