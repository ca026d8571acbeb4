"""Options from a configuration file: the ``websocket`` section, clamped into safe bounds."""

from managed_websocket import ManagedWebSocket, open_managed_websocket

# As loaded from your YAML or TOML file.
CONFIG = {
    "websocket": {
        "ping": {"interval": 1, "timeout": 10},  # interval: clamped up to 5
        "reconnect": {"delay": 0.5, "max_delay": 30, "max_attempts": "twenty"},  # bad: default
        "queue": {"size": 5000},
    }
}


async def main(url: str) -> ManagedWebSocket:
    # An explicit keyword wins over the mapping and is not clamped.
    async with open_managed_websocket(url, config=CONFIG, ping_timeout=2.5) as ws:
        await ws.send({"type": "ping"})
    return ws
