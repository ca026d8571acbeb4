"""A scripted WebSocket server for tests, with faults you trigger while it runs.

It runs on asyncio and trio (through anyio), speaks real WebSocket over real sockets, records what
every client did, and lets a test refuse, stall, flap, close, drop, reset or silence connections::

    from managed_websocket.testing import open_test_server

    async with open_test_server() as server:
        ...  # point the code under test at server.url
        await server.wait_for_handshakes(1)
        await server.drop_clients()  # FIN without a close frame
        assert server.clients[0].ended_by == "server_drop"
"""

from __future__ import annotations

from ._records import ClientRecord, EndedBy
from ._server import WebSocketTestServer, open_test_server

__all__ = ["ClientRecord", "EndedBy", "WebSocketTestServer", "open_test_server"]
