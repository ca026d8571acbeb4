"""Dialing the server through a proxy: HTTP CONNECT (``http://``, ``https://``) and SOCKS
(``socks4://``, ``socks5://``, ``socks5h://``). Not :mod:`managed_websocket.testing`'s fault proxy.

- :func:`parse_proxy_url` checks a proxy URL; :class:`ProxyURL` never shows its credentials.
- :func:`proxy_from_environment` picks the proxy for a target like ``websockets`` does: for
  ``wss://`` ``wss_proxy`` then ``https_proxy``, for ``ws://`` ``ws_proxy`` then ``http_proxy``
  (lower case first, then upper case), unless ``no_proxy`` names the host.
- :func:`open_tunnel` returns a byte stream to the target through the proxy; TLS to the target,
  for ``wss://``, is the caller's (``_handshake.py``), inside the tunnel. An ``https://`` proxy is
  reached over TLS first. HTTP CONNECT is ours (h11, sans-I/O: :func:`connect_request`,
  :func:`read_connect_response`); SOCKS is python-socks' anyio backend (the ``[socks]`` extra).

Every failure becomes a :class:`~._exceptions.WebSocketProxyError`, retryable or not by the rules
of a handshake status (407 and 403 are final, 5xx is retried, an unreachable proxy is retried).
"""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import anyio
import anyio.abc
import h11
from anyio.streams.tls import TLSStream

from ._exceptions import BODY_SNIPPET_LIMIT, WebSocketProxyError
from ._redact import mask_url
from ._url import WebSocketURL

__all__ = [
    "ProxyURL",
    "connect_request",
    "open_tunnel",
    "parse_proxy_url",
    "proxy_from_environment",
    "read_connect_response",
]

_DEFAULT_PORTS = {"http": 80, "https": 443, "socks4": 1080, "socks5": 1080, "socks5h": 1080}
#: SOCKS5 replies no retry can fix: "connection not allowed by ruleset", bad command or address.
_FINAL_SOCKS_CODES = frozenset({2, 7, 8})


@dataclass(frozen=True, slots=True)
class ProxyURL:
    """A checked proxy URL. ``str()`` and ``repr()`` mask the credentials."""

    raw: str
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    def __str__(self) -> str:
        return mask_url(self.raw)

    def __repr__(self) -> str:
        return f"ProxyURL({mask_url(self.raw)!r})"


def parse_proxy_url(url: str) -> ProxyURL:
    """Check ``url``; raise ValueError (the URL masked in the message) when it is unusable."""
    if not isinstance(url, str):
        raise TypeError(f"proxy must be a URL str, True or None, not {type(url).__name__}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(f"invalid proxy URL {mask_url(url)!r}: malformed") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        schemes = ", ".join(f"{name}://" for name in _DEFAULT_PORTS)
        raise ValueError(
            f"invalid proxy URL {mask_url(url)!r}: the scheme must be one of {schemes}"
        )
    if not parts.hostname:
        raise ValueError(f"invalid proxy URL {mask_url(url)!r}: no host")
    return ProxyURL(
        raw=url,
        scheme=scheme,
        host=parts.hostname,
        port=port or _DEFAULT_PORTS[scheme],
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def proxy_from_environment(
    target: WebSocketURL, environ: Mapping[str, str] | None = None
) -> str | None:
    """The proxy URL the environment gives for ``target``, or None (none set, or ``no_proxy``)."""
    env = os.environ if environ is None else environ
    names = ("wss_proxy", "https_proxy") if target.secure else ("ws_proxy", "http_proxy")
    proxy = next((value for name in names if (value := _getenv(env, name))), None)
    if proxy is None or _bypassed(target, _getenv(env, "no_proxy") or ""):
        return None
    return proxy


def _getenv(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name) or env.get(name.upper())
    return value.strip() if value and value.strip() else None


def _bypassed(target: WebSocketURL, no_proxy: str) -> bool:
    """``no_proxy``: comma-separated host names (a suffix match: ``example.com`` and
    ``.example.com`` cover ``feed.example.com``), IP addresses or networks, each with an optional
    ``:port``; ``*`` covers everything."""
    host = target.host.lower().rstrip(".")
    for entry in (item.strip().lower() for item in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        name, port = _split_port(entry)
        if port is not None and port != target.port:
            continue
        if _host_matches(host, name):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):  # [::1]:8080
        name, _, rest = entry[1:].partition("]")
        return name, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    name, sep, port = entry.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, int(port)
    return entry, None


def _host_matches(host: str, entry: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        try:
            return address in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    entry = entry.lstrip(".").rstrip(".")
    return bool(entry) and (host == entry or host.endswith("." + entry))


# HTTP CONNECT, sans-I/O


def _authority(target: WebSocketURL) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}"


def connect_request(target: WebSocketURL, proxy: ProxyURL) -> tuple[h11.Connection, bytes]:
    """The CONNECT request for ``target``, with Basic ``Proxy-Authorization`` when ``proxy``
    has credentials; and the h11 connection that reads the answer."""
    authority = _authority(target).encode("idna")
    headers = [(b"Host", authority)]
    if proxy.username is not None:
        credentials = f"{proxy.username}:{proxy.password or ''}".encode()
        headers.append((b"Proxy-Authorization", b"Basic " + base64.b64encode(credentials)))
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(method=b"CONNECT", target=authority, headers=headers)
    return connection, connection.send(request) or b""


def read_connect_response(connection: h11.Connection, data: bytes) -> h11.Response | None:
    """Feed the proxy's answer (``b""``: it closed); the response once its head is complete.
    Raises h11.RemoteProtocolError for a malformed one."""
    connection.receive_data(data)
    while True:
        event = connection.next_event()
        if isinstance(event, h11.Response):
            return event
        if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
            if not data:
                raise h11.RemoteProtocolError("the proxy closed the connection")
            return None


# The I/O


async def open_tunnel(
    proxy: ProxyURL, target: WebSocketURL, ssl_context: ssl.SSLContext | None
) -> anyio.abc.ByteStream:
    """A byte stream to ``target`` through ``proxy`` (``ssl_context`` verifies an https://
    proxy; None: the system's trust store). Raises WebSocketProxyError."""
    if proxy.scheme.startswith("socks"):
        return await _socks_tunnel(proxy, target)
    stream = await _connect_proxy(proxy, target)
    try:
        if proxy.scheme == "https":
            stream = await _tls_to_proxy(stream, proxy, target, ssl_context)
        await _http_connect(stream, proxy, target)
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
    return stream


async def _connect_proxy(proxy: ProxyURL, target: WebSocketURL) -> anyio.abc.ByteStream:
    try:
        return await anyio.connect_tcp(proxy.host, proxy.port)
    except socket.gaierror as exc:
        raise _error(f"cannot resolve proxy host {proxy.host!r}", proxy, target, exc) from exc
    except OSError as exc:
        raise _error("cannot connect to the proxy", proxy, target, exc) from exc


async def _tls_to_proxy(
    stream: anyio.abc.ByteStream,
    proxy: ProxyURL,
    target: WebSocketURL,
    ssl_context: ssl.SSLContext | None,
) -> anyio.abc.ByteStream:
    context = ssl_context if ssl_context is not None else ssl.create_default_context()
    try:
        return await TLSStream.wrap(
            stream, hostname=proxy.host, ssl_context=context, standard_compatible=False
        )
    except (ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream, OSError) as exc:
        retryable = not isinstance(exc, ssl.SSLCertVerificationError)
        raise _error(
            "TLS handshake with the proxy failed", proxy, target, exc, retryable=retryable
        ) from exc


async def _http_connect(
    stream: anyio.abc.ByteStream, proxy: ProxyURL, target: WebSocketURL
) -> None:
    connection, request = connect_request(target, proxy)
    try:
        await stream.send(request)
        response = None
        while response is None:
            response = read_connect_response(connection, await _receive_or_eof(stream))
    except (anyio.BrokenResourceError, OSError, h11.RemoteProtocolError) as exc:
        raise _error("the proxy broke off the CONNECT", proxy, target, exc) from exc
    if not 200 <= response.status_code < 300:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
        raise WebSocketProxyError(
            f"proxy {proxy} refused the tunnel with HTTP {response.status_code}",
            proxy=str(proxy),
            url=target.raw,
            status_code=response.status_code,
            headers=headers,
        )
    trailing, _closed = connection.trailing_data
    if trailing:
        raise _error(
            "the proxy sent data before the tunnel was used", proxy, target, None, retryable=False
        )


async def _receive_or_eof(stream: anyio.abc.ByteStream) -> bytes:
    try:
        return await stream.receive(BODY_SNIPPET_LIMIT * 16)
    except anyio.EndOfStream:
        return b""


async def _socks_tunnel(proxy: ProxyURL, target: WebSocketURL) -> anyio.abc.ByteStream:
    try:
        from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
        from python_socks.async_.anyio import Proxy
    except ImportError as exc:
        raise _error(
            "SOCKS proxies need python-socks: pip install 'managed-websocket[socks]'",
            proxy,
            target,
            exc,
            retryable=False,
        ) from exc
    kind = {"socks4": ProxyType.SOCKS4, "socks5": ProxyType.SOCKS5, "socks5h": ProxyType.SOCKS5}
    client = Proxy(
        kind[proxy.scheme],
        proxy.host,
        proxy.port,
        proxy.username,
        proxy.password,
        rdns=proxy.scheme == "socks5h",  # socks5h: the proxy resolves the name
    )
    try:
        # No timeout of its own: connection_timeout bounds the whole dial.
        return await client.connect(target.host, target.port, timeout=float("inf"))
    except ProxyError as exc:
        code = exc.error_code
        final = code in _FINAL_SOCKS_CODES or "authentication" in str(exc).lower()
        raise _error(
            f"SOCKS proxy refused the tunnel ({exc})", proxy, target, exc, retryable=not final
        ) from exc
    except (ProxyConnectionError, ProxyTimeoutError, OSError) as exc:
        raise _error("cannot connect to the SOCKS proxy", proxy, target, exc) from exc


def _error(
    message: str,
    proxy: ProxyURL,
    target: WebSocketURL,
    cause: BaseException | None,
    *,
    retryable: bool = True,
) -> WebSocketProxyError:
    if "proxy " + str(proxy) not in message:
        message = f"{message} (proxy {proxy})"
    return WebSocketProxyError(
        message, proxy=str(proxy), url=target.raw, retryable=retryable, last_error=cause
    )
