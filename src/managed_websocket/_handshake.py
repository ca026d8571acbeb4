"""Opening a client WebSocket connection: TCP, TLS and the HTTP upgrade, with typed errors.

Every failure is translated here, once, into the library's exceptions (always chained with
``from``), so nothing from anyio, ssl or wsproto leaks past this seam:

- name resolution fails → :class:`WebSocketDNSError`
- TCP refused or unreachable → :class:`WebSocketConnectionRefusedError`
- TLS handshake or certificate verification fails → :class:`WebSocketTLSError`
- the server answers the upgrade with another status → :class:`WebSocketHandshakeError`
- it accepts with an illegal permessage-deflate answer → :class:`WebSocketExtensionError`
- the proxy cannot be reached or refuses the tunnel → :class:`WebSocketProxyError`
- ``connection_timeout`` (one budget for TCP + TLS + upgrade) → :class:`WebSocketTimeoutError`
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Literal, TypeAlias

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream

from ._connection import DEFAULT_READ_SIZE, WebSocketConnection
from ._deflate import OFFER, DeflateNegotiationError, negotiate
from ._exceptions import (
    BODY_SNIPPET_LIMIT,
    WebSocketConnectionError,
    WebSocketConnectionRefusedError,
    WebSocketDNSError,
    WebSocketExtensionError,
    WebSocketHandshakeError,
    WebSocketProxyError,
    WebSocketTimeoutError,
    WebSocketTLSError,
)
from ._proxy_dial import ProxyURL, open_tunnel, parse_proxy_url, proxy_from_environment
from ._upgrade import Accepted, ClientUpgrade, Rejected, UpgradeFailed
from ._url import WebSocketURL, parse_ws_url, with_basic_auth

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = ["connect_websocket", "open_websocket_connection"]

DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024

Headers = Mapping[str, str] | Sequence[tuple[str, str]]
#: ``"deflate"``: offer permessage-deflate (RFC 7692); ``None``: no compression.
Compression: TypeAlias = Literal["deflate"] | None
#: A proxy URL; ``True``: the one the environment gives (``wss_proxy``...); ``None``: no proxy.
Proxy: TypeAlias = str | ProxyURL | Literal[True] | None


@asynccontextmanager
async def connect_websocket(
    url: str | WebSocketURL,
    *,
    headers: Headers = (),
    subprotocols: Sequence[str] = (),
    ssl_context: ssl.SSLContext | None = None,
    connection_timeout: float = 30.0,
    close_timeout: float = 10.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    read_size: int = DEFAULT_READ_SIZE,
    compression: Compression = "deflate",
    proxy: Proxy = True,
) -> AsyncIterator[WebSocketConnection]:
    """Open a WebSocket connection for the duration of an ``async with`` block.

    On a normal exit the connection closes gracefully (1000); on an exception or cancellation the
    socket is closed at once. See :func:`open_websocket_connection` for the arguments and errors.
    """
    conn = await open_websocket_connection(
        url,
        headers=headers,
        subprotocols=subprotocols,
        ssl_context=ssl_context,
        connection_timeout=connection_timeout,
        close_timeout=close_timeout,
        max_message_size=max_message_size,
        read_size=read_size,
        compression=compression,
        proxy=proxy,
    )
    try:
        yield conn
    except BaseException:
        await conn.abort()
        raise
    await conn.aclose()


async def open_websocket_connection(
    url: str | WebSocketURL,
    *,
    headers: Headers = (),
    subprotocols: Sequence[str] = (),
    ssl_context: ssl.SSLContext | None = None,
    connection_timeout: float = 30.0,
    close_timeout: float = 10.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    read_size: int = DEFAULT_READ_SIZE,
    compression: Compression = "deflate",
    proxy: Proxy = True,
) -> WebSocketConnection:
    """Open a WebSocket connection; the caller must ``aclose()`` (or ``abort()``) it.

    Args:
        url: ``ws://`` or ``wss://`` URL (host name, IPv4 or bracketed IPv6 literal).
        headers: extra request headers.
        subprotocols: offered subprotocols, in order of preference.
        ssl_context: for ``wss://``; default: a verifying context from the system trust store.
        connection_timeout: one budget for TCP connect, TLS handshake and upgrade.
        close_timeout: how long :meth:`WebSocketConnection.aclose` waits for the peer's close.
        max_message_size: incoming messages larger than this fail the connection with 1009
            (for a compressed message: its inflated size).
        compression: ``"deflate"`` offers permessage-deflate (RFC 7692), ``None`` does not.
        proxy: an ``http://``, ``https://``, ``socks5://``, ``socks5h://`` or ``socks4://`` URL
            (credentials in it are sent, never shown); ``True`` (the default): the proxy the
            environment names for this URL (``wss_proxy``/``https_proxy`` or
            ``ws_proxy``/``http_proxy``, unless ``no_proxy`` covers the host); ``None``: none.
            An ``https://`` proxy is verified with ``ssl_context`` too.

    Raises:
        WebSocketInvalidURLError, WebSocketDNSError, WebSocketConnectionRefusedError,
        WebSocketTLSError, WebSocketHandshakeError, WebSocketExtensionError, WebSocketProxyError,
        WebSocketTimeoutError,
        WebSocketConnectionError (any other failure while opening).
    """
    if compression not in ("deflate", None):
        raise ValueError(f"compression must be 'deflate' or None, got {compression!r}")
    target = url if isinstance(url, WebSocketURL) else parse_ws_url(url)
    via = _resolve_proxy(proxy, target)
    header_pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    header_pairs = with_basic_auth(target, header_pairs)  # user:pass@ in the URL
    with anyio.move_on_after(connection_timeout) as scope:
        stream = await _open_stream(target, ssl_context, via)
        try:
            return await _upgrade(
                stream,
                target,
                header_pairs,
                subprotocols,
                max_message_size=max_message_size,
                close_timeout=close_timeout,
                read_size=read_size,
                compression=compression,
            )
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise
    assert scope.cancelled_caught
    raise WebSocketTimeoutError("connect", connection_timeout)


def _resolve_proxy(proxy: Proxy, target: WebSocketURL) -> ProxyURL | None:
    """The proxy to dial through, if any. A bad URL from the environment is a final
    WebSocketProxyError; a bad ``proxy=`` argument a ValueError, before any I/O."""
    if proxy is None or isinstance(proxy, ProxyURL):
        return proxy
    if proxy is True:
        from_env = proxy_from_environment(target)
        if from_env is None:
            return None
        try:
            return parse_proxy_url(from_env)
        except ValueError as exc:
            raise WebSocketProxyError(
                f"{exc} (from the environment)", proxy=from_env, url=target.raw, retryable=False
            ) from None
    return parse_proxy_url(proxy)


async def _open_stream(
    target: WebSocketURL, ssl_context: ssl.SSLContext | None, proxy: ProxyURL | None = None
) -> anyio.abc.ByteStream:
    try:
        if proxy is not None:
            tcp = await open_tunnel(proxy, target, ssl_context)
        else:
            tcp = await anyio.connect_tcp(target.host, target.port)
    except WebSocketProxyError:
        raise  # an OSError too: kept from below
    except socket.gaierror as exc:
        raise WebSocketDNSError(
            f"cannot resolve host {target.host!r}", url=target.raw, last_error=exc
        ) from exc
    except OSError as exc:
        # The URL names the host and port (the exception's message ends with it): not repeated.
        raise WebSocketConnectionRefusedError(
            _tcp_problem(exc), url=target.raw, last_error=exc
        ) from exc
    if not target.secure:
        return tcp
    context = ssl_context if ssl_context is not None else ssl.create_default_context()
    try:
        return await TLSStream.wrap(
            tcp, hostname=target.host, ssl_context=context, standard_compatible=False
        )
    except BaseException as exc:
        await anyio.aclose_forcefully(tcp)
        if isinstance(exc, ssl.SSLError | anyio.BrokenResourceError | anyio.EndOfStream | OSError):
            raise WebSocketTLSError(
                f"TLS handshake failed ({_describe(exc)}){_plain_server_hint(exc)}",
                url=target.raw,
                last_error=exc,
            ) from exc
        raise


def _tcp_problem(exc: OSError) -> str:
    """Why TCP failed, once: "connection refused", or the system's words for it."""
    causes = _leaf_errors(exc)
    if causes and all(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return "connection refused"
    cause = causes[0] if causes else exc
    if isinstance(cause, OSError) and cause.errno:
        # Not cause.strerror: asyncio puts "Connect call failed (address)" there.
        return f"cannot connect: {os.strerror(cause.errno)}"
    return f"cannot connect ({_describe(cause)})"


def _leaf_errors(exc: BaseException) -> list[BaseException]:
    """The errors behind ``exc``: anyio raises one OSError for all the addresses it tried, from
    a group of one error per address."""
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        return [leaf for sub in cause.exceptions for leaf in _leaf_errors(sub) or [sub]]
    if cause is not None:
        return [cause]
    return [exc]


#: OpenSSL's reasons when the other side answered the ClientHello with something not TLS.
_NOT_TLS_REASONS = frozenset({"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "RECORD_LAYER_FAILURE"})


def _plain_server_hint(exc: BaseException) -> str:
    """A plain (ws://) server closes on a ClientHello or answers it in plain HTTP: say so."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ""
    not_tls = isinstance(exc, anyio.EndOfStream | anyio.BrokenResourceError) or (
        isinstance(exc, ssl.SSLError) and exc.reason in _NOT_TLS_REASONS
    )
    return "; the server may not speak TLS (try ws:// instead of wss://)" if not_tls else ""


async def _upgrade(
    stream: anyio.abc.ByteStream,
    target: WebSocketURL,
    headers: list[tuple[str, str]],
    subprotocols: Sequence[str],
    *,
    max_message_size: int,
    close_timeout: float,
    read_size: int,
    compression: Compression,
) -> WebSocketConnection:
    upgrade = ClientUpgrade(
        target.host_header,
        target.resource,
        headers,
        subprotocols,
        OFFER if compression == "deflate" else None,
        BODY_SNIPPET_LIMIT,
    )
    try:
        await stream.send(upgrade.request())
        accept = await _read_response(stream, upgrade, target)
        deflate = negotiate(accept.extensions, offered=compression == "deflate")
    except WebSocketConnectionError:
        raise  # a refusal (WebSocketHandshakeError); it is an OSError too, so keep it from below
    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
        raise WebSocketConnectionError(
            "connection closed during the WebSocket handshake", url=target.raw, last_error=exc
        ) from exc
    except UpgradeFailed as exc:
        raise WebSocketConnectionError(
            f"invalid handshake response ({exc})", url=target.raw, last_error=exc
        ) from exc
    except DeflateNegotiationError as exc:
        raise WebSocketExtensionError(
            f"invalid permessage-deflate answer ({exc})", url=target.raw, last_error=exc
        ) from exc
    conn = WebSocketConnection(
        stream,
        url=target,
        subprotocol=accept.subprotocol,
        response_headers=accept.headers,
        max_message_size=max_message_size,
        close_timeout=close_timeout,
        read_size=read_size,
        initial_data=accept.trailing,
        deflate=deflate,
    )
    # Frames that came in the same packet as the 101 response: answer pings, queue messages.
    await conn._handle_events()
    return conn


async def _read_response(
    stream: anyio.abc.ByteStream, upgrade: ClientUpgrade, target: WebSocketURL
) -> Accepted:
    answer = None
    while answer is None:
        data = await _receive_or_eof(stream)
        answer = upgrade.receive_data(data)
        if answer is None and not data:
            raise anyio.EndOfStream
    if isinstance(answer, Rejected):
        raise WebSocketHandshakeError(
            answer.status_code, dict(answer.headers), answer.body, url=target.raw
        )
    return answer


async def _receive_or_eof(stream: anyio.abc.ByteStream) -> bytes:
    """The next bytes from ``stream``, or ``b""`` once it has ended."""
    try:
        return await stream.receive(65536)
    except anyio.EndOfStream:
        return b""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
