"""Send the library's log records to your handler; secrets in URLs are masked everywhere."""

import logging

from managed_websocket import mask_url, open_managed_websocket

LISTEN_KEY = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a6"  # a credential


def configure_logging(handler: logging.Handler) -> None:
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("managed_websocket")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # DEBUG adds every state transition and pong


async def main(url: str) -> tuple[str, str]:
    async with open_managed_websocket(f"{url}/ws/{LISTEN_KEY}") as ws:
        shown = ws.url  # also in repr(ws), log records and exception messages
    return shown, mask_url("wss://bot:hunter2@api.example.com/ws?apiKey=abc&symbol=BTCUSDT")
