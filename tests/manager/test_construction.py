"""A manager can be built before any event loop runs (e.g. at module level), then run."""

from __future__ import annotations

import socket

import anyio
import pytest

from managed_websocket import ConnectionState, ManagedWebSocket, WebSocketReconnectError


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_built_outside_the_event_loop_then_run(backend: str) -> None:
    ws = ManagedWebSocket(
        f"ws://127.0.0.1:{closed_port()}/", max_reconnect_attempts=1, reconnect_delay=0.01
    )
    assert ws.state is ConnectionState.DISCONNECTED
    assert ws.stats.uptime == 0.0  # the clock starts when the manager runs

    async def main() -> float:
        with anyio.fail_after(10), pytest.raises(WebSocketReconnectError) as info:
            async with ws:
                pass
        assert info.value.attempts == 1
        assert ws.state is ConnectionState.CLOSED
        return ws.stats.uptime

    assert anyio.run(main, backend=backend) > 0.0
