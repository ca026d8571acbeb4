"""managed-websocket: a WebSocket client for anyio (asyncio and trio) that keeps long-lived feeds alive."""

from __future__ import annotations

from ._connection import WebSocketConnection
from ._exceptions import (
    WebSocketAbnormalClosureError,
    WebSocketClosedError,
    WebSocketConnectionError,
    WebSocketConnectionRefusedError,
    WebSocketDNSError,
    WebSocketError,
    WebSocketHandshakeError,
    WebSocketInvalidURLError,
    WebSocketMessageTooBigError,
    WebSocketProtocolError,
    WebSocketQueueFullError,
    WebSocketReconnectError,
    WebSocketTimeoutError,
    WebSocketTLSError,
)
from ._handshake import connect_websocket, open_websocket_connection
from ._models import (
    ConnectionState,
    DisconnectEvent,
    DisconnectReason,
    ReconnectStrategy,
    WebSocketStats,
)
from ._redact import mask_url

__all__ = [
    "ConnectionState",
    "DisconnectEvent",
    "DisconnectReason",
    "ReconnectStrategy",
    "WebSocketAbnormalClosureError",
    "WebSocketClosedError",
    "WebSocketConnection",
    "WebSocketConnectionError",
    "WebSocketConnectionRefusedError",
    "WebSocketDNSError",
    "WebSocketError",
    "WebSocketHandshakeError",
    "WebSocketInvalidURLError",
    "WebSocketMessageTooBigError",
    "WebSocketProtocolError",
    "WebSocketQueueFullError",
    "WebSocketReconnectError",
    "WebSocketStats",
    "WebSocketTLSError",
    "WebSocketTimeoutError",
    "connect_websocket",
    "mask_url",
    "open_websocket_connection",
]
