"""managed-websocket: a WebSocket client for anyio (asyncio and trio) that keeps long-lived feeds alive."""

from __future__ import annotations

#: The package version: the only place it is written (pyproject.toml reads it from here).
__version__ = "0.1.0"

from ._connection import WebSocketConnection
from ._deflate import DeflateParams
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
    SubscriptionFailed,
    SubscriptionsReplayed,
)
from ._exceptions import (
    WebSocketAbnormalClosureError,
    WebSocketClosedError,
    WebSocketConnectionError,
    WebSocketConnectionRefusedError,
    WebSocketDNSError,
    WebSocketError,
    WebSocketExtensionError,
    WebSocketHandshakeError,
    WebSocketInvalidURLError,
    WebSocketMessageTooBigError,
    WebSocketProtocolError,
    WebSocketProxyError,
    WebSocketQueueFullError,
    WebSocketReconnectError,
    WebSocketSubscriptionError,
    WebSocketTimeoutError,
    WebSocketTLSError,
)
from ._handshake import connect_websocket, open_websocket_connection
from ._heartbeat import Heartbeat, PingReply
from ._ledger import Outage
from ._manager import ManagedWebSocket, MessageIterator, open_managed_websocket
from ._models import (
    ConnectionState,
    DisconnectEvent,
    DisconnectReason,
    ReconnectStrategy,
    WebSocketStats,
)
from ._pool import (
    ChannelsReplaced,
    ManagedWebSocketPool,
    PoolEvent,
    PoolEventListener,
    PoolIterator,
    PoolShard,
    PoolStats,
    ShardClosed,
    ShardFailed,
    ShardOpened,
    ShardState,
    open_managed_pool,
)
from ._redact import mask_url
from ._settings import ManagedWebSocketOptions
from ._subscriptions import (
    BinanceSubscriptions,
    BybitSubscriptions,
    GenericSubscriptions,
    OkxSubscriptions,
    SubscriptionProtocol,
    SubscriptionReply,
)

__all__ = [
    "BinanceSubscriptions",
    "BybitSubscriptions",
    "ChannelsReplaced",
    "ConnectFailed",
    "Connected",
    "Connecting",
    "ConnectionState",
    "DeflateParams",
    "DisconnectDeferred",
    "DisconnectEvent",
    "DisconnectReason",
    "Disconnected",
    "EventListener",
    "GapDetected",
    "GenericSubscriptions",
    "Heartbeat",
    "LifecycleEvent",
    "ManagedWebSocket",
    "ManagedWebSocketOptions",
    "ManagedWebSocketPool",
    "MessageIterator",
    "MessagesDropped",
    "OkxSubscriptions",
    "Outage",
    "PingReply",
    "PoolEvent",
    "PoolEventListener",
    "PoolIterator",
    "PoolShard",
    "PoolStats",
    "ReconnectScheduled",
    "ReconnectStrategy",
    "RotationCompleted",
    "RotationFailed",
    "RotationStarted",
    "ShardClosed",
    "ShardFailed",
    "ShardOpened",
    "ShardState",
    "SubscriptionFailed",
    "SubscriptionProtocol",
    "SubscriptionReply",
    "SubscriptionsReplayed",
    "WebSocketAbnormalClosureError",
    "WebSocketClosedError",
    "WebSocketConnection",
    "WebSocketConnectionError",
    "WebSocketConnectionRefusedError",
    "WebSocketDNSError",
    "WebSocketError",
    "WebSocketExtensionError",
    "WebSocketHandshakeError",
    "WebSocketInvalidURLError",
    "WebSocketMessageTooBigError",
    "WebSocketProtocolError",
    "WebSocketProxyError",
    "WebSocketQueueFullError",
    "WebSocketReconnectError",
    "WebSocketStats",
    "WebSocketSubscriptionError",
    "WebSocketTLSError",
    "WebSocketTimeoutError",
    "__version__",
    "connect_websocket",
    "mask_url",
    "open_managed_pool",
    "open_managed_websocket",
    "open_websocket_connection",
]

# No handler here, not even a NullHandler: with no logging configured, WARNING and above (a
# disconnect, a failed dial) reach stderr through logging's last-resort handler, so failures are
# visible by default. An application that configures logging decides where they go.
