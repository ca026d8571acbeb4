"""Masking of secrets in URLs for logs, reprs and exception messages.

Pure functions, no I/O. Every place that shows a URL to a human goes through :func:`mask_url`.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, unquote, urlsplit

__all__ = ["mask_url"]

MASK = "***"

#: A query key is treated as secret when its lower-cased name contains one of these.
_SECRET_KEY_PARTS = (
    "token",
    "secret",
    "key",
    "sig",
    "pass",
    "pwd",
    "auth",
    "session",
    "credential",
    "jwt",
    "code",
)

#: A path segment right after ``/ws/`` that looks like an exchange listen key (Binance: 60
#: alphanumerics). Stream names such as ``btcusdt@trade`` contain ``@`` or are short, so they stay.
_LISTEN_KEY = re.compile(r"^[A-Za-z0-9_\-]{20,}$")
#: In a URL urlsplit cannot parse: everything from "://" to the last "@" may be userinfo.
_USERINFO = re.compile(r"(?<=://).*@", re.DOTALL)


def _is_secret_key(key: str) -> bool:
    lowered = unquote(key).lower()  # "api%5Fkey" is "api_key"
    return any(part in lowered for part in _SECRET_KEY_PARTS)


def _mask_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        key, sep, _value = pair.partition("=")
        pairs.append(f"{key}={MASK}" if sep and _is_secret_key(key) else pair)
    return "&".join(pairs)


def _mask_path(path: str) -> str:
    segments = path.split("/")
    for i in range(1, len(segments)):
        if segments[i - 1] == "ws" and _LISTEN_KEY.match(segments[i]):
            has_digit = any(c.isdigit() for c in segments[i])
            has_alpha = any(c.isalpha() for c in segments[i])
            if has_digit and has_alpha:
                segments[i] = MASK
    return "/".join(segments)


def port_text(netloc: str) -> str:
    """What follows the host in ``netloc`` (after the last ``:``), or "" when there is none."""
    _host, sep, port = netloc.rpartition(":")
    return "" if not sep or "]" in port else port


def _mask_unparsable(url: str) -> str:
    # urlsplit gave up (e.g. an unclosed "[" IPv6 bracket): keep what is surely harmless.
    head = re.split(r"[?#]", url, maxsplit=1)[0]
    return _mask_path(_USERINFO.sub(f"{MASK}@", head, count=1))


_URL_IN_TEXT = re.compile(r"\b(?:wss?|https?|socks(?:4|5h?))://[^\s'\"<>]+")


def mask_urls_in(text: str) -> str:
    """``text`` with every ws(s)/http(s)/socks URL in it masked (e.g. an exception's message)."""
    return _URL_IN_TEXT.sub(lambda match: mask_url(match.group()), text)


def mask_url(url: str) -> str:
    """Return ``url`` with its secrets replaced by ``***``.

    Masks the userinfo (``user:pass@``), the values of token-like keys (``token``, ``api_key``,
    ``signature``, ``listenKey``...) in the query and in the fragment, and a listen-key-like path
    segment after ``/ws/``. Works on malformed input too: it never raises.
    """
    if isinstance(url, (bytes, bytearray)):  # callers are not all type-checked: never raise
        url = bytes(url).decode("utf-8", "replace")
    elif not isinstance(url, str):
        url = str(url)
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return _mask_unparsable(url)
    _scheme, netloc, path, query, fragment = parts
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    else:
        port = port_text(netloc)
        if port and not (port.isascii() and port.isdigit()):
            # "user:pa/ss@host": an unescaped "/", "?" or "#" in a password ends the netloc
            # early, and the password shows up as the port. Mask it, and if the "@" is further
            # on, drop the rest: it holds the remainder of the password.
            netloc = f"{netloc[: -len(port)]}{MASK}"
            if any("@" in part for part in (path, query, fragment)):
                path = query = fragment = ""
    masked = SplitResult(
        parts.scheme, netloc, _mask_path(path), _mask_query(query), _mask_query(fragment)
    )
    return masked.geturl()
