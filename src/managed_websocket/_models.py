"""Plain data: states, reasons, strategies, statistics and disconnect records. No I/O."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields

__all__ = [
    "ConnectionState",
    "DisconnectEvent",
    "DisconnectReason",
    "ReconnectStrategy",
    "WebSocketStats",
]


class ConnectionState(enum.Enum):
    """Where the managed connection is. The transition table lives in ``_manager/_state.py``."""

    #: No connection, and none being opened right now (before start, after close() or kill(),
    #: or while waiting for a proactive reconnect to be allowed).
    DISCONNECTED = "disconnected"
    #: The first connection, or one requested by connect(), is being opened.
    CONNECTING = "connecting"
    #: A connection is open: send() works.
    CONNECTED = "connected"
    #: The previous connection ended; the supervisor is waiting its delay or dialling again.
    RECONNECTING = "reconnecting"
    #: A terminal close is in progress.
    CLOSING = "closing"
    #: Terminal: shut down or failed. Nothing reconnects from here.
    CLOSED = "closed"

    def can_connect(self) -> bool:
        """True in DISCONNECTED and RECONNECTING: a dial may be scheduled from here."""
        return self in (ConnectionState.DISCONNECTED, ConnectionState.RECONNECTING)

    def can_send(self) -> bool:
        """True in CONNECTED only."""
        return self is ConnectionState.CONNECTED

    def is_terminal(self) -> bool:
        """True in CLOSED only: shut down or failed, for good."""
        return self is ConnectionState.CLOSED


class DisconnectReason(enum.Enum):
    """Why a connection ended. Proactive reasons are ours to choose; reactive ones happen to us.

    Proactive: USER_REQUESTED (``request_disconnect()``, ``close()``, ``shutdown()``), SCHEDULED
    (rotations; or pass it to ``request_disconnect()``), CALLBACK_TRIGGERED (``should_disconnect``),
    CONNECTION_LIMIT (only when passed to ``request_disconnect()``). Reactive: SERVER_CLOSED (a
    close frame from the server), NETWORK_ERROR (EOF or reset without a close frame),
    PING_TIMEOUT (keepalive), DATA_TIMEOUT (no data message for ``max_silence``), PROTOCOL_ERROR
    (the peer broke RFC 6455, or a message was too big), KILLED (``kill()``).
    """

    USER_REQUESTED = "user_requested"
    SCHEDULED = "scheduled"
    CALLBACK_TRIGGERED = "callback_triggered"
    CONNECTION_LIMIT = "connection_limit"
    SERVER_CLOSED = "server_closed"
    NETWORK_ERROR = "network_error"
    PING_TIMEOUT = "ping_timeout"
    DATA_TIMEOUT = "data_timeout"
    PROTOCOL_ERROR = "protocol_error"
    KILLED = "killed"

    @property
    def is_proactive(self) -> bool:
        """USER_REQUESTED, SCHEDULED, CALLBACK_TRIGGERED, CONNECTION_LIMIT: we chose to end it."""
        return self in _PROACTIVE

    @property
    def is_reactive(self) -> bool:
        """SERVER_CLOSED, NETWORK_ERROR, PING_TIMEOUT, DATA_TIMEOUT, PROTOCOL_ERROR, KILLED: it
        happened to us."""
        return not self.is_proactive


_PROACTIVE = frozenset(
    {
        DisconnectReason.USER_REQUESTED,
        DisconnectReason.SCHEDULED,
        DisconnectReason.CALLBACK_TRIGGERED,
        DisconnectReason.CONNECTION_LIMIT,
    }
)


class ReconnectStrategy(enum.Enum):
    """How long to wait before reconnect attempt n (1, 2, ...), before jitter.

    IMMEDIATE: 0. FIXED_DELAY: ``reconnect_delay``. EXPONENTIAL_BACKOFF:
    ``min(reconnect_delay * 2 ** (n - 1), max_reconnect_delay)``. CALLBACK_CONTROLLED: the delay
    ``should_reconnect`` returns (True: now), asked again every ``reconnect_check_interval`` until
    it gives one; without ``should_reconnect``, ``reconnect_delay``.
    """

    IMMEDIATE = "immediate"
    FIXED_DELAY = "fixed_delay"
    EXPONENTIAL_BACKOFF = "exponential_backoff"
    CALLBACK_CONTROLLED = "callback_controlled"


@dataclass(frozen=True, slots=True)
class DisconnectEvent:
    """One ended connection: why, the close code and reason if a close frame said so, and when."""

    reason: DisconnectReason
    code: int | None = None
    close_reason: str = ""
    error: BaseException | None = None
    at: float = 0.0  # wall-clock time.time()


@dataclass
class WebSocketStats:
    """Live counters of one manager. Durations use the manager's clock (``anyio.current_time``)."""

    connects: int = 0
    disconnects: int = 0
    proactive_disconnects: int = 0
    reactive_disconnects: int = 0
    messages_received: int = 0
    messages_sent: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    messages_dropped: int = 0
    reconnect_attempts: int = 0
    callback_errors: int = 0
    rotations: int = 0  # make-before-break switches completed
    rotations_failed: int = 0
    overlap_messages: int = 0  # messages a new connection staged during rotations
    # Dropped by dedup_key as already delivered by the old connection: staged ones at the switch,
    # and the new connection's first messages after it while the streams still overlap.
    duplicates_dropped: int = 0
    # Received on a connection a rotation gave up (read by the old one after the switch, or
    # staged by a candidate that failed): the other connection carries the same feed.
    messages_superseded: int = 0
    # Control messages consumed, not delivered: heartbeat replies, the server's application
    # pings (ping_reply) and answers to subscription requests and to request().
    messages_consumed: int = 0
    gaps_detected: int = 0  # sequence jumps (with sequence_of)
    last_connect_time: float = 0.0  # wall clock, 0.0 = never
    last_disconnect_time: float = 0.0
    last_message_time: float = 0.0
    latency: float | None = None  # last keepalive (ping frame or heartbeat) round trip, seconds
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    _started: float | None = field(default=None, repr=False, compare=False)
    _connected_since: float | None = field(default=None, repr=False, compare=False)

    def start(self) -> None:
        """Start the uptime clock (the manager does, when it starts running), unless started."""
        if self._started is None:
            self._started = self.clock()

    @property
    def uptime(self) -> float:
        """Seconds since the manager started running or the stats were last reset."""
        return 0.0 if self._started is None else self.clock() - self._started

    @property
    def connection_time(self) -> float:
        """Seconds the current connection has been open; 0.0 when not connected."""
        since = self._connected_since
        return 0.0 if since is None else self.clock() - since

    def reset(self) -> None:
        """Zero every counter (the current connection's start time is kept)."""
        for f in fields(self):
            if not f.name.startswith("_") and f.name != "clock":
                setattr(self, f.name, f.default)
        self._started = self.clock()

    # Recorders: the manager's only way to change the counters.

    def record_connect(self) -> None:
        self.connects += 1
        self.last_connect_time = time.time()
        self._connected_since = self.clock()

    def record_disconnect(self, reason: DisconnectReason) -> None:
        self.disconnects += 1
        if reason.is_proactive:
            self.proactive_disconnects += 1
        else:
            self.reactive_disconnects += 1
        self.last_disconnect_time = time.time()
        self._connected_since = None

    def record_received(self, count: int, size: int) -> None:
        self.messages_received += count
        self.bytes_received += size
        self.last_message_time = time.time()

    def record_sent(self, size: int) -> None:
        self.messages_sent += 1
        self.bytes_sent += size
