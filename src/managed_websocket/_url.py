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
    if any(c.isspace() for c in url):
        raise WebSocketInvalidURLError(url, "URL contains whitespace")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebSocketInvalidURLError(url, f"malformed URL ({exc})") from None
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
