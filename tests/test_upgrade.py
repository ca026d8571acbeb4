"""The HTTP upgrade without sockets (``_upgrade.ClientUpgrade``, on h11's public API)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from managed_websocket._upgrade import Accepted, ClientUpgrade, Rejected, UpgradeFailed

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def upgrade(subprotocols: tuple[str, ...] = ()) -> tuple[ClientUpgrade, bytes]:
    client = ClientUpgrade(
        "example.com:8080",
        "/feed?x=1",
        [("X-Token", "abc")],
        subprotocols,
        "permessage-deflate; client_max_window_bits",
        512,
    )
    request = client.request()
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    return client, base64.b64encode(hashlib.sha1(key + GUID).digest())


def response(accept: bytes, *extra: bytes, connection: bytes = b"Upgrade") -> bytes:
    head = [b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket"]
    head += [b"Connection: " + connection, b"Sec-WebSocket-Accept: " + accept, *extra]
    return b"\r\n".join(head) + b"\r\n\r\n"


def test_the_request() -> None:
    lines = ClientUpgrade("[::1]:9000", "/", [("X-A", "1")], ["a", "b"], None, 512).request()
    assert lines.split(b"\r\n")[:7] == [
        b"GET / HTTP/1.1",
        b"Host: [::1]:9000",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        lines.split(b"\r\n")[4],  # the random key
        b"Sec-WebSocket-Version: 13",
        b"Sec-WebSocket-Protocol: a, b",
    ]
    assert b"X-A: 1\r\n" in lines
    assert b"Sec-WebSocket-Extensions" not in lines
    offer = ClientUpgrade("h", "/", [], [], "permessage-deflate", 512).request()
    assert b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n" in offer


def test_accepted_with_the_bytes_after_the_101_in_pieces() -> None:
    client, accept = upgrade(("chat",))
    data = response(
        accept,
        b"Sec-WebSocket-Protocol: chat",
        b"Sec-WebSocket-Extensions: permessage-deflate",
        b"X-Peer: test",
    )
    frames = b"\x81\x02hi\x81\x02yo"
    whole = data + frames
    for i in range(len(data) - 1):
        assert client.receive_data(whole[i : i + 1]) is None
    answer = client.receive_data(whole[len(data) - 1 :])
    assert answer == Accepted("chat", [("x-peer", "test")], ["permessage-deflate"], frames)


@pytest.mark.parametrize(
    ("extra", "connection", "problem"),
    [
        ((), b"keep-alive", "Connection: Upgrade"),
        ((b"Sec-WebSocket-Protocol: other",), b"Upgrade", "subprotocol"),
    ],
)
def test_invalid_upgrades(extra: tuple[bytes, ...], connection: bytes, problem: str) -> None:
    client, accept = upgrade(("chat",))
    with pytest.raises(UpgradeFailed, match=problem):
        client.receive_data(response(accept, *extra, connection=connection))


def test_a_wrong_accept_token() -> None:
    client, _accept = upgrade()
    with pytest.raises(UpgradeFailed, match="Sec-WebSocket-Accept"):
        client.receive_data(response(b"bm90IHRoZSB0b2tlbg=="))


def test_not_http_at_all() -> None:
    client, _accept = upgrade()
    with pytest.raises(UpgradeFailed, match="bad HTTP response"):
        client.receive_data(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")


def test_a_refusal_with_its_body_cut_at_the_limit() -> None:
    client, _accept = upgrade()
    body = b"x" * 2000
    head = b"HTTP/1.1 503 Busy\r\nRetry-After: 3\r\nContent-Length: 2000\r\n\r\n"
    answer = client.receive_data(head + body)
    assert isinstance(answer, Rejected)
    assert answer.status_code == 503
    assert ("retry-after", "3") in answer.headers
    assert answer.body.startswith(b"x" * 512)


def test_a_refusal_cut_short_by_the_server() -> None:
    client, _accept = upgrade()
    assert client.receive_data(b"HTTP/1.1 403 No\r\nContent-Length: 100\r\n\r\npartial") is None
    answer = client.receive_data(b"")
    assert answer == Rejected(403, [("content-length", "100")], b"partial")


def test_closed_before_any_response() -> None:
    client, _accept = upgrade()
    assert client.receive_data(b"HTTP/1.1 10") is None
    assert client.receive_data(b"") is None  # the caller reports the end of the stream
