"""WebSocket URLs: validation and splitting (RFC 6455 section 3). Pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ._exceptions import WebSocketInvalidURLError
from ._redact import mask_url

__all__ = ["WebSocketURL", "parse_ws_url"]

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
        raise WebSocketInvalidURLError(url, "port must be a number from 1 to 65535") from None
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
