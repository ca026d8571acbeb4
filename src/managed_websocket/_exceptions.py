"""Exceptions raised by managed-websocket.

Every exception derives from :class:`WebSocketError`::

    WebSocketError
    ├── WebSocketInvalidURLError (also ValueError)
    ├── WebSocketConnectionError (also ConnectionError)
    │   ├── WebSocketDNSError
    │   ├── WebSocketConnectionRefusedError
    │   ├── WebSocketTLSError
    │   ├── WebSocketHandshakeError        (HTTP status other than 101)
    │   ├── WebSocketExtensionError        (an illegal answer to our permessage-deflate offer)
    │   └── WebSocketProxyError            (the proxy refused or could not be reached)
    ├── WebSocketClosedError                (code, reason)
    │   └── WebSocketAbnormalClosureError   (1006: EOF or reset, no close frame)
    ├── WebSocketTimeoutError (also TimeoutError)
    ├── WebSocketReconnectError             (attempts, last_error)
    ├── WebSocketProtocolError              (the peer broke RFC 6455; code 1002/1007)
    │   └── WebSocketMessageTooBigError     (our max_message_size; code 1009)
    ├── WebSocketQueueFullError             (overflow="error")
    └── WebSocketSubscriptionError          (channels, code, reason: refused or unanswered)

Messages are built here from typed attributes, and every URL is masked here, once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ._redact import mask_url, mask_urls_in

__all__ = [
    "WebSocketAbnormalClosureError",
    "WebSocketClosedError",
    "WebSocketConnectionError",
    "WebSocketConnectionRefusedError",
    "WebSocketDNSError",
    "WebSocketError",
    "WebSocketExtensionError",
    "WebSocketHandshakeError",
    "WebSocketInvalidURLError",
    "WebSocketMessageTooBigError",
    "WebSocketProtocolError",
    "WebSocketProxyError",
    "WebSocketQueueFullError",
    "WebSocketReconnectError",
    "WebSocketSubscriptionError",
    "WebSocketTLSError",
    "WebSocketTimeoutError",
]

#: How much of a refused handshake's body an exception keeps.
BODY_SNIPPET_LIMIT = 512


def describe(error: BaseException) -> str:
    """``error``'s message without the URL it may end with: for a line that names the URL."""
    if isinstance(error, WebSocketConnectionError | WebSocketReconnectError):
        return error.message
    return str(error)


def quote_close_reason(reason: str) -> str:
    """A peer's close reason as shown in messages: quoted and escaped (no line breaks or control
    characters reach a log), any URL in it masked."""
    return repr(mask_urls_in(reason))


def describe_close(code: int | None, reason: str) -> str:
    """How a disconnect ended, for a log line or a panel: ``code 1001, reason 'bye'``, or ``no
    close code`` (a ping timeout or a kill() ends without one: not "code None")."""
    shown = "no close code" if code is None else f"code {code}"
    return f"{shown}, reason {quote_close_reason(reason)}" if reason else shown


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class WebSocketError(Exception):
    """Base class of every exception this library raises."""


class WebSocketInvalidURLError(WebSocketError, ValueError):
    """Raised when a URL is not a usable ``ws://`` or ``wss://`` URL."""

    def __init__(self, url: str, problem: str) -> None:
        self.url: str = mask_url(url)
        self.problem = problem
        super().__init__(f"invalid WebSocket URL {self.url!r}: {problem}")


class WebSocketConnectionError(WebSocketError, ConnectionError):
    """Raised when a connection cannot be opened."""

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        attempts: int = 0,
        last_error: BaseException | None = None,
    ) -> None:
        self.url: str = mask_url(url)
        self.attempts = attempts
        self.last_error = last_error
        self.message: str = message
        super().__init__(f"{message} ({self.url})" if self.url else message)


class WebSocketDNSError(WebSocketConnectionError):
    """Raised when the host name of the URL cannot be resolved."""


class WebSocketConnectionRefusedError(WebSocketConnectionError):
    """Raised when the TCP connection is refused or the host is unreachable."""


class WebSocketTLSError(WebSocketConnectionError):
    """Raised when the TLS handshake fails (certificate verification included)."""


class WebSocketHandshakeError(WebSocketConnectionError):
    """Raised when the server answers the upgrade request with an HTTP status other than 101."""

    def __init__(
        self,
        status_code: int,
        headers: Mapping[str, str],
        body: bytes = b"",
        *,
        url: str = "",
    ) -> None:
        self.status_code = status_code
        self.headers: dict[str, str] = dict(headers)
        self.body: bytes = body[:BODY_SNIPPET_LIMIT]
        super().__init__(_refusal(status_code), url=url)

    @property
    def retry_after(self) -> float | None:
        """Seconds from the ``Retry-After`` header (delta-seconds form), if present and valid."""
        value = self.headers.get("retry-after")
        if value is None:
            return None
        try:
            seconds = float(value.strip())
        except ValueError:
            return None
        return seconds if seconds >= 0 else None

    @property
    def is_retryable(self) -> bool:
        """408, 429 and 5xx may be retried; any other 4xx is fatal (SPEC section 5)."""
        return self.status_code in (408, 429) or self.status_code >= 500


class WebSocketExtensionError(WebSocketConnectionError):
    """Raised when the server accepts the upgrade with an extension answer that is not legal for
    our offer (RFC 6455 4.1, RFC 7692 7.1): the connection is not used. Retried like any other
    failed dial; ``compression=None`` stops offering permessage-deflate."""


class WebSocketProxyError(WebSocketConnectionError):
    """Raised when the proxy (``proxy=`` or the environment) cannot be reached or refuses the
    tunnel: an HTTP CONNECT status other than 2xx (``status_code``, ``headers``), a SOCKS failure.

    Retried or final by the rules of a handshake status: 407 (proxy credentials), 403 and the
    other 4xx are final, 408, 429 and 5xx are retried; a SOCKS authentication failure or a
    "not allowed by ruleset" reply is final, other SOCKS failures and an unreachable proxy are
    retried (:attr:`is_retryable`). ``proxy`` is the proxy URL, masked."""

    def __init__(
        self,
        message: str,
        *,
        proxy: str,
        url: str = "",
        status_code: int | None = None,
        headers: Mapping[str, str] | None = None,
        retryable: bool | None = None,
        last_error: BaseException | None = None,
    ) -> None:
        self.proxy: str = mask_url(proxy)
        self.status_code = status_code
        self.headers: dict[str, str] = dict(headers or {})
        if retryable is None:
            retryable = status_code is None or status_code in (408, 429) or status_code >= 500
        self._retryable = retryable
        super().__init__(mask_urls_in(message), url=url, last_error=last_error)

    @property
    def is_retryable(self) -> bool:
        """Whether another dial may succeed (see the class documentation)."""
        return self._retryable


def _refusal(status_code: int) -> str:
    if 200 <= status_code < 300:
        # It answered the upgrade as a plain HTTP request: a web page or REST path, not a feed.
        return f"server answered HTTP {status_code} without upgrading: not a WebSocket endpoint"
    return f"server refused the WebSocket upgrade with HTTP {status_code}"


class WebSocketClosedError(WebSocketError):
    """Raised when the connection is closed (or not open) and the operation needs it open."""

    def __init__(
        self, message: str = "connection closed", *, code: int = 1006, reason: str = ""
    ) -> None:
        self.code = code
        self.reason = reason
        # The peer's reason is what explains the close; shown quoted, with any URL masked.
        detail = f", reason {quote_close_reason(reason)}" if reason else ""
        super().__init__(f"{message} (code {code}{detail})")


class WebSocketAbnormalClosureError(WebSocketClosedError):
    """Raised when the connection ended without a close frame (EOF or reset): code 1006."""

    def __init__(self, message: str = "connection lost without a close frame") -> None:
        super().__init__(message, code=1006)


class WebSocketTimeoutError(WebSocketError, TimeoutError):
    """Raised when an operation does not finish within its timeout."""

    def __init__(self, operation: str, timeout: float) -> None:
        self.operation = operation
        self.timeout = timeout
        super().__init__(f"{operation} timed out after {timeout:g} s")


class WebSocketReconnectError(WebSocketError):
    """Raised when reconnection gives up after ``max_reconnect_attempts``."""

    def __init__(self, attempts: int, last_error: BaseException | None = None) -> None:
        self.attempts = attempts
        self.last_error = last_error
        detail = f": {describe(last_error)}" if last_error is not None else ""
        #: Without the URL (see :func:`describe`); the URL is said once, at the end.
        self.message: str = f"gave up reconnecting after {_plural(attempts, 'attempt')}{detail}"
        url = getattr(last_error, "url", "")
        super().__init__(f"{self.message} ({url})" if url else self.message)


class WebSocketProtocolError(WebSocketError):
    """Raised when the peer violates RFC 6455; we closed the connection with ``code``."""

    def __init__(self, message: str, *, code: int = 1002) -> None:
        self.code = code
        super().__init__(f"{message} (closed with {code})")


class WebSocketMessageTooBigError(WebSocketProtocolError):
    """Raised when an incoming message exceeds ``max_message_size``; closed with 1009."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"incoming message exceeds max_message_size={limit}", code=1009)


class WebSocketQueueFullError(WebSocketError):
    """Raised to the consumer when ``overflow="error"`` and the message queue overflowed."""

    def __init__(self, queue_size: int, dropped_count: int) -> None:
        self.queue_size = queue_size
        self.dropped_count = dropped_count
        super().__init__(
            f"message queue full (queue_size={queue_size}, dropped {dropped_count} messages)"
        )


class WebSocketSubscriptionError(WebSocketError):
    """Raised by ``subscribe()``/``unsubscribe()`` when the server refuses the request (``code``
    and ``reason`` are its answer), does not acknowledge it within ``ack_timeout`` (``code`` is
    None), or when ``max_subscriptions`` or the protocol's message limits would be exceeded
    (nothing was sent then)."""

    def __init__(
        self,
        channels: Sequence[str],
        reason: str,
        *,
        code: int | str | None = None,
        operation: str = "subscribe",
    ) -> None:
        self.channels: tuple[str, ...] = tuple(channels)
        self.code = code
        self.reason = reason
        self.operation = operation
        shown = ", ".join(self.channels[:5])
        if len(self.channels) > 5:
            shown += f" and {len(self.channels) - 5} more"
        detail = f"code {code}: " if code is not None else ""
        super().__init__(f"{operation} {shown} failed: {detail}{mask_urls_in(reason)}")
