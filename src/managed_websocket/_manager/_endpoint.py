"""Where each dial goes: the URL and the request headers, fixed or from providers.

``url`` and ``headers`` may be zero-argument callables, sync or async. They are called before
every dial (the first, every reconnect, every rotation candidate), so credentials that expire (a
listen key in the URL, a signed token in a header) are fresh for each attempt. A provider that
raises, or returns something unusable, fails that attempt like a refused dial (backoff,
``last_error``); URLs in its message are masked.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .._exceptions import WebSocketConnectionError, WebSocketInvalidURLError
from .._redact import mask_urls_in
from .._settings import HeadersProvider, UrlProvider, check_headers
from .._url import WebSocketURL, parse_ws_url

__all__ = ["Endpoint"]


class Endpoint:
    __slots__ = ("_headers", "_provider", "last")

    def __init__(
        self, url: str | UrlProvider, headers: tuple[tuple[str, str], ...] | HeadersProvider
    ) -> None:
        self._provider: UrlProvider | None = None
        #: The URL of the last dial (masked by str()); the fixed one from the start.
        self.last: WebSocketURL | None = None
        if isinstance(url, str):
            self.last = parse_ws_url(url)  # a bad fixed URL is the caller's error: raise now
        elif callable(url):
            self._provider = url
        else:
            raise TypeError(
                f"url must be a str or a zero-argument callable returning one, "
                f"not {type(url).__name__}"
            )
        self._headers = headers

    @property
    def refreshes_credentials(self) -> bool:
        """Whether each dial may bring new credentials (a provider for the URL or headers)."""
        return self._provider is not None or callable(self._headers)

    def __str__(self) -> str:
        return str(self.last) if self.last is not None else "<url provider>"

    async def resolve(self) -> tuple[WebSocketURL, tuple[tuple[str, str], ...]]:
        """The URL and headers for the next dial, asking the providers."""
        if self._provider is not None:
            url = await _provided("url", self._provider)
            try:
                self.last = parse_ws_url(url) if isinstance(url, str) else None
            except WebSocketInvalidURLError as exc:
                raise WebSocketConnectionError(
                    f"the url provider returned an invalid URL: {exc.problem}",
                    url=exc.url,
                    last_error=exc,
                ) from exc
            if self.last is None:
                raise WebSocketConnectionError(
                    f"the url provider returned {type(url).__name__}, not a str"
                )
        assert self.last is not None
        headers = self._headers
        if callable(headers):
            provided = await _provided("headers", headers)
            try:
                headers = check_headers("the headers provider's answer", provided)
            except (TypeError, ValueError) as exc:
                raise WebSocketConnectionError(str(exc), last_error=exc) from exc
        return self.last, headers


async def _provided(what: str, provider: Callable[[], Any]) -> Any:
    try:
        value = provider()
        if inspect.isawaitable(value):
            value = await value
    except Exception as exc:
        raise WebSocketConnectionError(
            f"the {what} provider raised {type(exc).__name__}: {mask_urls_in(str(exc))}",
            last_error=exc,
        ) from exc
    return value
