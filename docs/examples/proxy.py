"""Through a proxy: explicit, from the environment, or none."""

from __future__ import annotations

from managed_websocket import WebSocketProxyError, open_managed_websocket


async def main(url: str, proxy: str | None = None) -> str:
    options = {} if proxy is None else {"proxy": proxy}  # not given: read the environment
    async with open_managed_websocket(url, decode=None, **options) as ws:  # type: ignore[arg-type]
        await ws.send("hello through the proxy")
        reply: str = await ws.receive()
        return reply


async def refused(url: str, proxy: str) -> int | None:
    """A proxy that says no (407 here: no credentials) is final: no retry loop."""
    try:
        async with open_managed_websocket(url, proxy=proxy):
            pass
    except WebSocketProxyError as exc:
        print("proxy refused:", exc)  # the proxy URL's credentials are masked
        return exc.status_code
    return None
