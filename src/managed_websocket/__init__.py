"""managed-websocket: a WebSocket client for anyio (asyncio and trio) that keeps long-lived feeds alive."""

from __future__ import annotations

#: The package version: the only place it is written (pyproject.toml reads it from here).
__version__ = "0.1.0"

from ._connection import WebSocketConnection
from ._events import (
    Connected,
    ConnectFailed,
    Connecting,
    DisconnectDeferred,
    Disconnected,
    EventListener,
    GapDetected,
    LifecycleEvent,
    MessagesDropped,
    ReconnectScheduled,
    RotationCompleted,
    RotationFailed,
    RotationStarted,
)
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
from ._ledger import Outage
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
    "ConnectFailed",
    "Connected",
    "Connecting",
    "ConnectionState",
    "DisconnectDeferred",
    "DisconnectEvent",
    "DisconnectReason",
    "Disconnected",
    "EventListener",
    "GapDetected",
    "LifecycleEvent",
    "ManagedWebSocket",
    "ManagedWebSocketOptions",
    "MessageIterator",
    "MessagesDropped",
    "Outage",
    "ReconnectScheduled",
    "ReconnectStrategy",
    "RotationCompleted",
    "RotationFailed",
    "RotationStarted",
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
    "__version__",
    "connect_websocket",
    "mask_url",
    "open_managed_websocket",
    "open_websocket_connection",
]

# No handler here, not even a NullHandler: with no logging configured, WARNING and above (a
# disconnect, a failed dial) reach stderr through logging's last-resort handler, so failures are
# visible by default. An application that configures logging decides where they go.
