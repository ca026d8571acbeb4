"""Masking of secrets in URLs for logs, reprs and exception messages.

Pure functions, no I/O. Every place that shows a URL to a human goes through :func:`mask_url`.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

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
_USERINFO = re.compile(r"(?<=://)[^/?#]*@")


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
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


def mask_url(url: str) -> str:
    """Return ``url`` with its secrets replaced by ``***``.

    Masks the userinfo (``user:pass@``), the values of token-like query keys (``token``,
    ``api_key``, ``signature``, ``listenKey``...) and a listen-key-like path segment after
    ``/ws/``. Works on malformed input too: it never raises.
    """
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO.sub(f"{MASK}@", url).split("?", 1)[0]
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    masked = SplitResult(
        parts.scheme, netloc, _mask_path(parts.path), _mask_query(parts.query), parts.fragment
    )
    return masked.geturl()
