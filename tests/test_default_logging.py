"""With no logging configured, failures still reach stderr (through logging's last resort)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

# No logging setup at all: what a first script looks like.
SCRIPT = textwrap.dedent(
    """
    import sys
    import anyio
    from managed_websocket import ManagedWebSocket, WebSocketReconnectError

    async def main() -> None:
        ws = ManagedWebSocket(
            sys.argv[1], max_reconnect_attempts=1, reconnect_delay=0.01, max_reconnect_delay=0.01
        )
        try:
            async with ws:
                pass
        except WebSocketReconnectError:
            pass

    anyio.run(main)
    """
)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_refused_dial_is_on_stderr_without_logging_configured_and_masked() -> None:
    url = f"ws://127.0.0.1:{_closed_port()}/feed?token=s3cret"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, url], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "failed" in done.stderr
    assert "127.0.0.1" in done.stderr
    assert "s3cret" not in done.stderr
    assert "token=***" in done.stderr
