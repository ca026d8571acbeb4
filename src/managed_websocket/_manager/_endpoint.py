"""Where each dial goes: the URL and the request headers, fixed, from providers, or a failover list.

``url`` and ``headers`` may be zero-argument callables, sync or async. They are called before
every dial (the first, every reconnect, every rotation candidate), so credentials that expire (a
listen key in the URL, a signed token in a header) are fresh for each attempt. A provider that
raises, or returns something unusable, fails that attempt like a refused dial (backoff,
``last_error``); URLs in its message are masked.

``urls=[...]`` lists endpoints for failover. Each keeps its own backoff: a failed dial makes that
endpoint wait its own exponential delay, and the next dial goes to the first endpoint, in list
order, whose wait is over (the first one is preferred whenever it is available). A connection
that ends reactively makes its endpoint back off the same way (counting on from its failures
unless it was up for ``stable_connection_time``), so the redial goes to another endpoint at
once. With one URL this is the manager's usual backoff, counted by attempt.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .._backoff import backoff_delay
from .._exceptions import WebSocketConnectionError, WebSocketInvalidURLError
from .._redact import mask_urls_in
from .._settings import HeadersProvider, UrlProvider, check_headers
from .._url import WebSocketURL, parse_ws_url

if TYPE_CHECKING:
    from .._settings import Settings

__all__ = ["Endpoint"]


class _Target:
    """One URL of a failover list and its own backoff."""

    __slots__ = ("failures", "ready_at", "url")

    def __init__(self, url: WebSocketURL) -> None:
        self.url = url
        self.failures = 0
        self.ready_at = 0.0  # on the manager's clock


class Endpoint:
    __slots__ = ("_chosen", "_headers", "_provider", "_targets", "last")

    def __init__(
        self,
        url: str | UrlProvider | Sequence[str],
        headers: tuple[tuple[str, str], ...] | HeadersProvider,
    ) -> None:
        self._provider: UrlProvider | None = None
        self._targets: list[_Target] = []
        self._chosen: _Target | None = None
        #: The URL of the last dial (masked by str()); the (first) fixed one from the start.
        self.last: WebSocketURL | None = None
        if isinstance(url, str):
            url = [url]
        if callable(url):
            self._provider = url
        elif isinstance(url, Sequence) and url and all(isinstance(u, str) for u in url):
            # A bad fixed URL is the caller's error: raise now.
            self._targets = [_Target(parse_ws_url(u)) for u in url]
            self.last = self._targets[0].url
        else:
            raise TypeError(
                "url must be a str or a zero-argument callable returning one, and urls a "
                f"non-empty list of str, not {_describe(url)}"
            )
        self._headers = headers

    @property
    def refreshes_credentials(self) -> bool:
        """Whether each dial may bring new credentials (a provider for the URL or headers)."""
        return self._provider is not None or callable(self._headers)

    @property
    def failover(self) -> bool:
        """Whether there are several URLs, each with its own backoff."""
        return len(self._targets) > 1

    def __str__(self) -> str:
        return str(self.last) if self.last is not None else "<url provider>"

    # Failover: per-endpoint backoff (only with urls=[...] of two or more).

    def wait(self, now: float) -> float:
        """Seconds until some endpoint may be dialled again."""
        return max(min(t.ready_at for t in self._targets) - now, 0.0)

    def failed(self, now: float, settings: Settings, floor: float = 0.0) -> None:
        """The last dial failed: that endpoint waits its own backoff (at least ``floor``, e.g.
        its Retry-After)."""
        target = self._chosen
        if target is not None:
            target.failures += 1
            target.ready_at = now + backoff_delay(settings, target.failures, floor=floor)

    def dropped(
        self, now: float, settings: Settings, *, stable: bool, reactive: bool, floor: float = 0.0
    ) -> None:
        """The connection to the last endpoint ended. A reactive end makes it back off, as a
        single URL would (its count starts over if the connection was stable); the next dial
        goes to another endpoint meanwhile."""
        target = self._chosen
        if target is None:
            return
        if stable or not reactive:
            target.failures = 0
            target.ready_at = 0.0
        if reactive:
            self.failed(now, settings, floor)

    def _choose(self, now: float) -> WebSocketURL:
        ready = [t for t in self._targets if t.ready_at <= now]
        target = ready[0] if ready else min(self._targets, key=lambda t: t.ready_at)
        self._chosen = target
        return target.url

    async def resolve(self, now: float = 0.0) -> tuple[WebSocketURL, tuple[tuple[str, str], ...]]:
        """The URL and headers for the next dial, asking the providers. ``now``: the manager's
        clock, to pick among failover endpoints."""
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
        elif self.failover:
            self.last = self._choose(now)
        assert self.last is not None
        headers = self._headers
        if callable(headers):
            provided = await _provided("headers", headers)
            try:
                headers = check_headers("the headers provider's answer", provided)
            except (TypeError, ValueError) as exc:
                raise WebSocketConnectionError(str(exc), last_error=exc) from exc
        return self.last, headers


def _describe(value: object) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "an empty list" if not value else f"a list holding {type(value[0]).__name__}"
    return type(value).__name__


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
