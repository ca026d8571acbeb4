"""The client's HTTP/1.1 upgrade to WebSocket (RFC 6455 4.1), sans-I/O, on h11's public API.

:class:`ClientUpgrade` builds the request and reads the response. It answers with
:class:`Accepted` (with the bytes that came after the 101 response: h11's public
``Connection.trailing_data``, the first frames) or :class:`Rejected` (another status, with the
start of its body), or raises :class:`UpgradeFailed` when the response is not a valid upgrade.
The key and accept token come from wsproto's public utilities; the extension answer is handed
back as it came, for ``_deflate.negotiate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import h11
from wsproto.utilities import generate_accept_token, generate_nonce, split_comma_header

__all__ = ["Accepted", "ClientUpgrade", "Rejected", "UpgradeFailed"]

#: Headers of the 101 response that belong to the handshake itself: not exposed, as wsproto did.
_HANDSHAKE_HEADERS = frozenset(
    {"connection", "upgrade", "sec-websocket-accept", "sec-websocket-protocol"}
    | {"sec-websocket-extensions"}
)


class UpgradeFailed(Exception):
    """The server's response is not a valid WebSocket upgrade."""


@dataclass(frozen=True, slots=True)
class Accepted:
    subprotocol: str | None
    headers: list[tuple[str, str]]  # names lower-cased, the handshake's own headers left out
    extensions: list[str]  # the Sec-WebSocket-Extensions values
    trailing: bytes  # what came after the 101 response: the first frames


@dataclass(frozen=True, slots=True)
class Rejected:
    status_code: int
    headers: list[tuple[str, str]]
    body: bytes = b""


@dataclass
class _Refusal:
    status_code: int
    headers: list[tuple[str, str]]
    body: bytearray = field(default_factory=bytearray)


class ClientUpgrade:
    """One upgrade exchange: :meth:`request`, then :meth:`receive_data` until it answers."""

    def __init__(
        self,
        host: str,
        resource: str,
        headers: Sequence[tuple[str, str]],
        subprotocols: Sequence[str],
        extensions: str | None,
        body_limit: int,
    ) -> None:
        self._h11 = h11.Connection(h11.CLIENT)
        self._nonce = generate_nonce()
        self._subprotocols = list(subprotocols)
        self._body_limit = body_limit
        self._refusal: _Refusal | None = None
        request_headers = [
            (b"Host", host.encode("idna")),
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Key", self._nonce),
            (b"Sec-WebSocket-Version", b"13"),
        ]
        if subprotocols:
            request_headers.append((b"Sec-WebSocket-Protocol", ", ".join(subprotocols).encode()))
        if extensions:
            request_headers.append((b"Sec-WebSocket-Extensions", extensions.encode("ascii")))
        request_headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        self._request = h11.Request(
            method="GET", target=resource.encode("ascii"), headers=request_headers
        )

    def request(self) -> bytes:
        return self._h11.send(self._request) or b""

    def receive_data(self, data: bytes) -> Accepted | Rejected | None:
        """Feed response bytes (``b""``: the server closed); None: more are needed."""
        self._h11.receive_data(data)
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                if not data:  # closed before a whole response: the caller says so
                    return self._rejected() if self._refusal is not None else None
                raise UpgradeFailed(f"bad HTTP response: {exc}") from None
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if not data and self._refusal is not None:
                    return self._rejected()  # closed before the body ended
                return None
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    return self._accepted(event)
                return Rejected(event.status_code, _decode(event.headers))
            if isinstance(event, h11.Response):
                self._refusal = _Refusal(event.status_code, _decode(event.headers))
            elif isinstance(event, h11.Data) and self._refusal is not None:
                self._refusal.body += event.data
                if len(self._refusal.body) >= self._body_limit:
                    return self._rejected()
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                if self._refusal is not None:
                    return self._rejected()
                return None

    def _rejected(self) -> Rejected:
        assert self._refusal is not None
        refusal = self._refusal
        return Rejected(refusal.status_code, refusal.headers, bytes(refusal.body))

    def _accepted(self, event: h11.InformationalResponse) -> Accepted:
        connection: list[str] = []
        upgrade = ""
        accept = None
        subprotocol = None
        extensions: list[str] = []
        headers = []
        for raw_name, raw_value in event.headers:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            if name == "connection":
                connection.extend(split_comma_header(raw_value))
            elif name == "upgrade":
                upgrade = value
            elif name == "sec-websocket-accept":
                accept = raw_value
            elif name == "sec-websocket-protocol":
                subprotocol = value
            elif name == "sec-websocket-extensions":
                extensions.append(value)
            if name not in _HANDSHAKE_HEADERS:
                headers.append((name, value))
        if not any(token.lower() == "upgrade" for token in connection):
            raise UpgradeFailed("missing header 'Connection: Upgrade'")
        if upgrade.strip().lower() != "websocket":
            raise UpgradeFailed("missing header 'Upgrade: websocket'")
        if accept != generate_accept_token(self._nonce):
            raise UpgradeFailed("bad Sec-WebSocket-Accept token")
        if subprotocol is not None and subprotocol not in self._subprotocols:
            raise UpgradeFailed(f"server chose a subprotocol we did not offer: {subprotocol!r}")
        trailing, _closed = self._h11.trailing_data
        return Accepted(subprotocol, headers, extensions, bytes(trailing))


def _decode(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in headers]
