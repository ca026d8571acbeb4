"""A scripted WebSocket server for tests, with faults you trigger while it runs.

It runs on asyncio and trio (through anyio), speaks real WebSocket over real sockets, records what
every client did, and lets a test refuse, stall, flap, close, drop, reset or silence connections::

    from managed_websocket.testing import open_test_server

    async with open_test_server() as server:
        ...  # point the code under test at server.url
        await server.wait_for_handshakes(1)
        await server.drop_clients()  # FIN without a close frame
        assert server.clients[0].ended_by == "server_drop"

For faults below WebSocket — latency, a bandwidth cap, a network partition, connections cut or
refused — put :func:`open_fault_proxy` (a TCP proxy) in front of it, or of any other server::

    async with open_test_server() as server, open_fault_proxy("127.0.0.1", server.port) as proxy:
        ...  # connect to proxy.url_for("/ws")
        proxy.blackhole()

To test exchange protocols (acknowledged subscriptions, required heartbeats, server pings, rate
limits, fresh tokens), wrap the server in :func:`open_venue`.
"""

from __future__ import annotations

from ._proxy import FaultProxy, ProxyCounters, open_fault_proxy
from ._records import ClientRecord, EndedBy
from ._server import WebSocketTestServer, open_test_server
from ._venue import Dialect, Venue, open_venue

__all__ = [
    "ClientRecord",
    "Dialect",
    "EndedBy",
    "FaultProxy",
    "ProxyCounters",
    "Venue",
    "WebSocketTestServer",
    "open_fault_proxy",
    "open_test_server",
    "open_venue",
]
