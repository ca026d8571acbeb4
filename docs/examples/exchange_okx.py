"""OKX: log in on every connection, a text "ping" heartbeat, channels acknowledged one by one."""

import base64
import hashlib
import hmac
import time

from managed_websocket import Heartbeat, OkxSubscriptions, open_managed_websocket

API_KEY, SECRET, PASSPHRASE = "demo-key", b"demo-secret", "demo-passphrase"
HEARTBEAT_INTERVAL = 25.0  # OKX closes a connection that sent nothing for 30 s


def login_message() -> dict[str, object]:
    timestamp = str(int(time.time()))
    digest = hmac.new(SECRET, f"{timestamp}GET/users/self/verify".encode(), hashlib.sha256)
    sign = base64.b64encode(digest.digest()).decode()
    return {
        "op": "login",
        "args": [
            {"apiKey": API_KEY, "passphrase": PASSPHRASE, "timestamp": timestamp, "sign": sign}
        ],
    }


async def main(url: str) -> list[object]:
    async def log_in() -> None:  # a new signature for every connection
        await ws.send(login_message())

    ws = open_managed_websocket(
        url,
        on_connect=log_in,  # runs before the subscriptions are replayed
        subscription_protocol=OkxSubscriptions(),  # "channel:instId" channel names
        heartbeat=Heartbeat("ping", HEARTBEAT_INTERVAL, is_reply=lambda m: m == "pong"),
    )
    received = []
    async with ws:
        await ws.subscribe("tickers:BTC-USDT", "trades:BTC-USDT")
        async for message in ws:  # "pong" and the acknowledgements never show up here
            received.append(message)
            if len(received) == 3:
                break
    return received
