"""WebSocket URLs: validation and splitting (RFC 6455 section 3). Pure functions, no I/O."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from ._exceptions import WebSocketInvalidURLError
from ._redact import MASK, mask_url, port_text

__all__ = ["WebSocketURL", "parse_ws_url", "with_basic_auth"]

_DEFAULT_PORTS = {"ws": 80, "wss": 443}


@dataclass(frozen=True, slots=True)
class WebSocketURL:
    """A validated ``ws://`` or ``wss://`` URL, split into what the connection needs."""

    raw: str
    secure: bool
    host: str
    port: int
    resource: str  # path and query, as sent in the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def basic_auth(self) -> str | None:
        """The ``Authorization`` value for ``user:pass@`` in the URL (HTTP Basic, RFC 7617,
        percent-escapes decoded, UTF-8), or None when the URL has no user. Never logged: every
        shown form of the URL masks the userinfo."""
        parts = urlsplit(self.raw)
        if parts.username is None:
            return None
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        return "Basic " + base64.b64encode(credentials.encode()).decode("ascii")

    def __str__(self) -> str:
        return mask_url(self.raw)

    def __repr__(self) -> str:
        return f"WebSocketURL({mask_url(self.raw)!r})"


def parse_ws_url(url: str) -> WebSocketURL:
    """Validate ``url`` and split it; raise :class:`WebSocketInvalidURLError` if unusable."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    # Whitespace and control characters would end up in the request line (or be silently
    # dropped by urlsplit, which strips tabs and newlines): refuse them.
    if any(c.isspace() or c < " " or c == "\x7f" for c in url):
        raise WebSocketInvalidURLError(url, "URL contains whitespace or control characters")
    # urlsplit's messages are never shown: they quote the netloc (password included) or a
    # "port" that may be a password cut short by an unescaped "/" ("ws://user:pa/ss@host").
    try:
        parts = urlsplit(url)
    except ValueError:
        raise WebSocketInvalidURLError(url, "malformed URL (bad IPv6 brackets or netloc)") from None
    try:
        port = parts.port
    except ValueError:
        raise WebSocketInvalidURLError(url, _bad_port(parts.netloc)) from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise WebSocketInvalidURLError(url, "scheme must be ws:// or wss://")
    host = parts.hostname
    if not host:
        raise WebSocketInvalidURLError(url, "URL has no host")
    if parts.fragment:
        raise WebSocketInvalidURLError(url, "WebSocket URLs cannot have a fragment")
    if port == 0:
        raise WebSocketInvalidURLError(url, "port 0 is not a valid port")
    if parts.username is not None and ":" in unquote(parts.username):
        # HTTP Basic cannot carry it (RFC 7617): the first ":" ends the user name.
        raise WebSocketInvalidURLError(url, "the user name in the URL cannot contain ':' (%3A)")
    resource = parts.path or "/"
    if parts.query:
        resource = f"{resource}?{parts.query}"
    return WebSocketURL(
        raw=url,
        secure=scheme == "wss",
        host=host,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        resource=resource,
    )


def _bad_port(netloc: str) -> str:
    """Say which part is wrong, showing the port only where the masked URL shows it too."""
    _userinfo, at, hostport = netloc.rpartition("@")
    text = port_text(hostport if at else netloc)
    if text.isascii() and text.isdigit():
        return f"port {text!r} is out of range: it must be from 1 to 65535"
    if at:
        return f"port {text!r} is not a number from 1 to 65535"
    # No "@" before it: "ws://user:pa/ss@h" puts a password cut short in the port's place.
    return (
        f"the port (shown as {MASK}: it may be part of a password) is not a number from 1 to 65535"
    )


def with_basic_auth(
    target: WebSocketURL, headers: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """``headers`` plus ``Authorization: Basic ...`` for ``user:pass@`` in the URL, as websockets
    does; an explicit Authorization header wins (it is sent, the URL's credentials are not)."""
    pairs = list(headers)
    auth = target.basic_auth
    if auth is not None and not any(name.lower() == "authorization" for name, _ in pairs):
        pairs.append(("Authorization", auth))
    return pairs
