"""wss:// with a private CA, an API token header and a preferred subprotocol."""

import os
import ssl

from managed_websocket import open_managed_websocket

TOKEN = os.environ.get("FEED_TOKEN", "demo-token")


async def main(url: str, ca_file: str) -> str | None:
    context = ssl.create_default_context(cafile=ca_file)  # verifies the server against your CA
    async with open_managed_websocket(
        url,
        ssl_context=context,
        headers={"Authorization": f"Bearer {TOKEN}"},
        subprotocols=["feed.v2", "feed.v1"],  # in order of preference
    ) as ws:
        return ws.subprotocol  # the one the server chose, or None
