"""Where the behaviour differs from kstlib's WebSocketManager, in code."""

from managed_websocket import open_managed_websocket

RECHECK = 5.0  # reconnect_check_interval: how often should_reconnect is asked


async def market_open() -> bool:  # async predicates are awaited (kstlib called them sync)
    return True


async def main(url: str) -> dict[str, object]:
    seen: dict[str, object] = {}
    async with open_managed_websocket(
        url, should_reconnect=market_open, reconnect_check_interval=RECHECK
    ) as ws:
        await ws.send(b"\x00\x01")  # a binary frame; kstlib sent the text "b'\\x00\\x01'"
        seen["echo"] = await ws.receive(timeout=5)

        await ws.request_disconnect()  # proactive: back when should_reconnect says True
        seen["back"] = await ws.wait_connected(timeout=5 * RECHECK)

        await ws.kill()  # TCP abort, no close frame: reason KILLED, state DISCONNECTED
        seen["killed"] = (ws.state, ws.last_disconnect.reason, ws.is_recoverable)
        await ws.connect()  # ... and recoverable

        await ws.close()  # graceful 1000 and not terminal ...
        seen["drained"] = [message async for message in ws]  # queued messages, then the end
        await ws.connect()  # ... so connect() works again
    seen["after_exit"] = (ws.state, ws.is_shutdown, await ws.wait_connected(timeout=0))
    return seen
