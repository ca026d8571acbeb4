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
from ._manager import ManagedWebSocket, MessageIterator, open_managed_websocket
from ._models import (
    ConnectionState,
    DisconnectEvent,
    DisconnectReason,
    ReconnectStrategy,
    WebSocketStats,
)
from ._redact import mask_url
from ._settings import ManagedWebSocketOptions

__all__ = [
    "ConnectionState",
    "DisconnectEvent",
    "DisconnectReason",
    "ManagedWebSocket",
    "ManagedWebSocketOptions",
    "MessageIterator",
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
    "open_managed_websocket",
    "open_websocket_connection",
]
