"""One open client WebSocket connection: our sans-I/O frame code over an anyio byte stream.

Theory of operation. Nothing runs in the background: whoever calls :meth:`receive_batch` (or
:meth:`receive`, or :meth:`ping` when nobody else is reading) reads the socket, feeds the
:class:`~._frames.FrameReader` and handles every event in one place, :meth:`_handle_events`. The
reader answers nothing by itself, so this module sends the pong for each ping and the close frame
for each close (RFC 6455 5.5.1, 5.5.2). Complete messages queue up in ``_pending``; one socket
read can complete many messages and the caller gets them all at once, which keeps the per-message
cost low. Outgoing frames are built (and masked) by :func:`~._frames.encode_frame`.

The close handshake state is ours too (``_state``, :class:`_State`): OPEN until a close frame is
sent (LOCAL_CLOSING: we wait for the peer's) or received (REMOTE_CLOSING: we answer it at once),
CLOSED when both have been exchanged or the socket ended. The HTTP upgrade is done in
``_handshake.py``; frames that arrived together with the 101 response come in as ``initial_data``.

With permessage-deflate negotiated (``deflate``), the reader inflates compressed messages as they
arrive and :meth:`send` compresses a message (then masks it) when ``_deflate.Deflater`` says so.

Once the connection has ended, ``_error`` holds the exception that explains why; messages that
arrived before it are still handed out first, then every receive raises it.

Opening a connection (TCP, TLS, the HTTP upgrade) lives in ``_handshake.py``.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections import deque
from collections.abc import Callable, Sequence

import anyio
import anyio.abc

from ._deflate import DeflateParams, Deflater, Inflater
from ._exceptions import (
    WebSocketAbnormalClosureError,
    WebSocketClosedError,
    WebSocketError,
    WebSocketMessageTooBigError,
    WebSocketProtocolError,
)
from ._frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Close,
    FrameReader,
    Ping,
    Pong,
    ProtocolFailure,
    close_payload,
    encode_frame,
)
from ._sync import FastLock
from ._url import WebSocketURL

__all__ = ["DEFAULT_READ_SIZE", "WebSocketConnection"]

#: Bytes asked of the socket per read. anyio's default (64 KiB) is several times slower for bulk
#: data on asyncio, whose larger reads get cut into copied pieces.
DEFAULT_READ_SIZE = 262_144

# Errors that mean "the socket is gone" when reading or writing.
_STREAM_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)

Data = str | bytes
_MESSAGE_TYPES = (str, bytes)  # the reader's events that are whole messages
# ``_pending`` while no message waits: shared, and never appended to (maxlen=0 would drop
# messages, so _handle_events replaces it with a deque of the connection's own first).
_NO_PENDING: deque[Data] = deque(maxlen=0)


class _State(enum.Enum):
    """The close handshake (RFC 6455 7.1): the same four states wsproto's connection keeps."""

    OPEN = 1
    LOCAL_CLOSING = 2  # we sent a close frame and wait for the peer's
    REMOTE_CLOSING = 3  # the peer sent one; we answer at once, so this is brief
    CLOSED = 4  # both sent, or the socket ended


_OPEN = _State.OPEN
_LOCAL_CLOSING = _State.LOCAL_CLOSING
_REMOTE_CLOSING = _State.REMOTE_CLOSING
_CLOSED = _State.CLOSED


class _PongWaiter:
    __slots__ = ("answered", "on_pong", "order", "payload", "sent_at", "wake")

    def __init__(
        self,
        order: int,
        payload: bytes,
        on_pong: Callable[[float], None] | None = None,
    ) -> None:
        self.answered = False
        self.order = order  # pings are answered in the order they were sent
        self.payload = payload
        self.wake = anyio.Event()
        # send_ping(): whoever reads the pong calls on_pong with the round-trip time.
        self.on_pong = on_pong
        self.sent_at = anyio.current_time()  # just before the ping goes out


class WebSocketConnection:
    """An open client WebSocket connection.

    Create it with :func:`connect_websocket` (an async context manager) or
    :func:`open_websocket_connection`. Safe to use from several tasks: sends are serialized,
    and one task at a time reads.
    """

    # Slots: thousands of idle connections each pay for their attributes, and a __dict__ with
    # more than 30 keys no longer shares its keys (CPython 3.11: +1.2 KiB per connection).
    __slots__ = (
        "_close_code",
        "_close_reason",
        "_close_timeout",
        "_deflate",
        "_deflater",
        "_draining",
        "_error",
        "_failing",
        "_flooded",
        "_interrupts",
        "_max_message_size",
        "_new_wait_scope",
        "_pending",
        "_ping_ids",
        "_ping_order",
        "_pong_waiters",
        "_read_lock",
        "_read_size",
        "_reader",
        "_response_headers",
        "_send_checks_first",
        "_send_lock",
        "_socket_closed",
        "_state",
        "_stream",
        "_subprotocol",
        "_url",
        "_wait_scope",
        "bytes_received",
        "bytes_sent",
    )

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        *,
        url: WebSocketURL,
        subprotocol: str | None,
        response_headers: Sequence[tuple[str, str]],
        max_message_size: int,
        close_timeout: float,
        read_size: int = DEFAULT_READ_SIZE,
        initial_data: bytes = b"",
        deflate: DeflateParams | None = None,
    ) -> None:
        """``initial_data``: bytes the server sent after its 101 response, already read.
        ``deflate``: the permessage-deflate parameters agreed in the handshake, if any."""
        self._stream = stream
        self._state = _OPEN
        self._deflate = deflate
        self._deflater = Deflater(deflate) if deflate is not None else None
        self._reader = FrameReader(
            max_message_size, Inflater(deflate) if deflate is not None else None
        )
        self._url = url
        self._subprotocol = subprotocol
        self._response_headers = list(response_headers)
        self._max_message_size = max_message_size
        self._close_timeout = close_timeout
        self._read_size = read_size
        self._pending: deque[Data] = _NO_PENDING  # a deque of its own once messages come
        self._error: WebSocketError | None = None
        self._socket_closed = False
        self._failing = False  # we sent a close frame because the peer misbehaved
        self._draining = False
        # An uncontended lock must not cost a trip through the event loop (nor, idle, a deque)
        self._send_lock = FastLock()
        self._read_lock = FastLock()
        self._send_checks_first = isinstance(stream, anyio.abc.SocketStream)
        # Per payload, in the order the pings were sent: two tasks may ping with the same payload.
        self._pong_waiters: dict[bytes, list[_PongWaiter]] = {}
        self._ping_ids = itertools.count(1)
        self._ping_order = itertools.count()
        self._close_code: int | None = None
        self._close_reason = ""
        # read_batch(): the scope of the socket wait it is in, and how many interrupt_read()
        # calls there have been (a read that started before one gives way).
        self._wait_scope: anyio.CancelScope | None = None
        self._new_wait_scope: type[anyio.CancelScope] | None = None
        self._interrupts = 0
        # The last read filled at least half the buffer: the peer sends faster than we read,
        # so the next read finds bytes waiting (see read_batch).
        self._flooded = False
        self.bytes_received: int = 0
        self.bytes_sent: int = 0
        # Call _handle_events() next: the handshake does, right after creating the connection.
        self._reader.receive_data(initial_data)

    def __repr__(self) -> str:
        state = "open" if self.is_open else f"closed code={self._close_code}"
        return f"<WebSocketConnection {self._url} {state}>"

    # Public properties

    @property
    def url(self) -> WebSocketURL:
        """The URL this connection was opened with (``str()`` of it is masked)."""
        return self._url

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose, or None."""
        return self._subprotocol

    @property
    def response_headers(self) -> list[tuple[str, str]]:
        """The headers of the server's 101 response, names lower-cased."""
        return list(self._response_headers)

    @property
    def compression(self) -> DeflateParams | None:
        """The permessage-deflate parameters agreed with the server, or None: uncompressed."""
        return self._deflate

    @property
    def is_open(self) -> bool:
        """True until the connection has ended for any reason."""
        return self._error is None

    @property
    def close_code(self) -> int | None:
        """The close code once closed: the peer's, ours, or 1006 for a lost connection."""
        return self._close_code

    @property
    def close_reason(self) -> str:
        """The close reason that came with :attr:`close_code` ("" if none); the peer's text."""
        return self._close_reason

    @property
    def closed_error(self) -> WebSocketError | None:
        """Why the connection ended (None while open)."""
        return self._error

    # Receiving

    async def receive(self) -> Data:
        """Return the next whole message: ``str`` for text, ``bytes`` for binary.

        Raises:
            WebSocketClosedError: the connection closed (after every earlier message was returned);
                :class:`WebSocketAbnormalClosureError` when it ended without a close frame.
            WebSocketProtocolError: the peer broke the protocol; we closed with 1002/1007/1009.
        """
        if not self._pending:
            await self._fill()
        return self._pending.popleft()

    async def receive_batch(self) -> list[Data]:
        """Return every message available now (at least one), in order. Raises like receive()."""
        if not self._pending:
            await self._fill()
        return self._take_pending()

    async def read_batch(self, deadline: float = math.inf) -> list[Data]:
        """Like :meth:`receive_batch`, but it gives way to :meth:`interrupt_read`: a call made
        while this one waits (for the read lock or for the socket) makes it return ``[]`` at once.
        So does ``deadline`` (on the ``anyio.current_time()`` clock) once it passes while this
        waits for the socket. Nothing is lost: bytes not yet read stay in the socket for the next
        read.

        Except, without a deadline, right after a read that filled at least half the buffer: then
        the peer is sending faster than we read, the wait is short, and it is not interruptible (a
        cancel scope per read was most of the manager's overhead on bulk transfers); bytes
        arriving, or the end of the connection, end it. A wait for the read lock is always
        interruptible."""
        if not self._pending:
            await self._read_once(interruptible=True, deadline=deadline)
        return self._take_pending()

    def interrupt_read(self) -> None:
        """Make a :meth:`read_batch` that is waiting now return ``[]`` (one already handling
        what it read finishes normally). For handing the socket from one reading task to another."""
        self._interrupts += 1
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    async def _fill(self) -> None:
        while not self._pending:
            await self._read_once(interruptible=False)

    async def _read_once(self, *, interruptible: bool, deadline: float = math.inf) -> None:
        """Read the socket once (unless messages are pending, or an interruptible read was
        interrupted meanwhile); raise why the connection ended once nothing is pending."""
        if not self._pending and self._error is not None:
            raise self._error
        interrupts = self._interrupts
        lock = self._read_lock
        try:
            # A free lock is taken without a cancellation check: the socket read that follows
            # checks before it takes any byte (anyio's streams do), and this is once per read.
            if not lock.acquire_nowait():
                await lock.acquire()
            try:
                interrupted = interruptible and interrupts != self._interrupts
                if not self._pending and self._error is None and not interrupted:
                    await self._read_chunk(interruptible=interruptible, deadline=deadline)
            finally:
                lock.release()
        finally:
            # Pingers waiting for a reader must learn that it stopped, even if cancelled.
            self._wake_pingers()
        if not self._pending and self._error is not None:
            raise self._error

    def _take_pending(self) -> list[Data]:
        pending = self._pending
        if not pending:
            return []
        # The deque goes with its messages: a connection that waits keeps none (~760 bytes).
        self._pending = _NO_PENDING
        return list(pending)

    # Sending

    async def send(self, data: Data) -> None:
        """Send one message: ``str`` as a text frame, ``bytes`` as a binary frame.

        Raises:
            TypeError: ``data`` is neither str nor bytes-like.
            WebSocketClosedError: the connection is closed or closing.
        """
        if isinstance(data, str):
            await self._send_frame(OP_TEXT, data)
        elif isinstance(data, bytes | bytearray | memoryview):
            await self._send_frame(OP_BINARY, bytes(data))
        else:
            raise TypeError(f"can only send str or bytes, not {type(data).__name__}")

    async def ping(self, payload: bytes | None = None) -> float:
        """Send a ping and return the round-trip time in seconds once its pong arrives.

        If no other task is reading, this reads the connection itself (messages that arrive
        meanwhile are kept for the next receive). Bound it with ``anyio.fail_after``.
        """
        waiter = self._expect_pong(payload)
        try:
            await self._send_frame(OP_PING, waiter.payload)
            while not waiter.answered:
                if self._error is not None:
                    raise self._error
                waiter.wake = anyio.Event()
                if self._read_lock.locked():
                    # The reader wakes us when the pong comes, or when it stops reading.
                    await waiter.wake.wait()
                else:
                    try:
                        async with self._read_lock:
                            await self._read_chunk()
                    finally:
                        self._wake_pingers()  # other pingers may wait for us to stop reading
        finally:
            self._forget_waiter(waiter)
        return anyio.current_time() - waiter.sent_at

    async def send_ping(self, on_pong: Callable[[float], None]) -> None:
        """Send a ping and return without waiting for its pong: whoever reads the pong (any
        receive, or a :meth:`ping`) calls ``on_pong`` with the round-trip time in seconds. For a
        reader that pings between its own reads (the managed connection's keepalive)."""
        waiter = self._expect_pong(None, on_pong)
        try:
            await self._send_frame(OP_PING, waiter.payload)
        except BaseException:
            self._forget_waiter(waiter)
            raise

    def _expect_pong(
        self, payload: bytes | None, on_pong: Callable[[float], None] | None = None
    ) -> _PongWaiter:
        """Register a ping about to be sent (``None``: a payload of our own numbering)."""
        if payload is None:
            payload = next(self._ping_ids).to_bytes(8, "big")
        waiter = _PongWaiter(next(self._ping_order), payload, on_pong)
        self._pong_waiters.setdefault(payload, []).append(waiter)
        return waiter

    def _forget_waiter(self, waiter: _PongWaiter) -> None:
        waiters = self._pong_waiters.get(waiter.payload)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._pong_waiters[waiter.payload]

    # Closing

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close gracefully: send a close frame, wait up to ``close_timeout`` for the peer's, close
        the socket. Idempotent; the socket is closed even if this is cancelled."""
        try:
            if self._state is _OPEN and not self._socket_closed:
                await self._send_close(code, reason)
                self._set_error(WebSocketClosedError("connection closed by us", code=code))
            await self._await_peer_close()
        except WebSocketError:
            pass
        finally:
            await self._close_socket()

    async def abort(self) -> None:
        """Close the TCP connection at once, without a close frame."""
        self._set_error(WebSocketAbnormalClosureError("connection aborted locally"))
        await self._close_socket()

    async def _await_peer_close(self) -> None:
        with anyio.move_on_after(self._close_timeout):
            async with self._read_lock:
                while self._awaiting_peer_close():
                    await self._read_chunk()

    async def _close_socket(self) -> None:
        if not self._socket_closed:
            self._socket_closed = True
            await anyio.aclose_forcefully(self._stream)
        self._wake_pingers()

    # The read path: one chunk from the socket, every event it completes.

    async def _read_chunk(self, *, interruptible: bool = False, deadline: float = math.inf) -> None:
        if self._socket_closed:
            self._set_error(WebSocketAbnormalClosureError())
            return
        data: bytes | None
        try:
            if interruptible and (deadline < math.inf or not self._flooded):
                # Only the wait is interruptible: once bytes are read, they are handled (and a
                # pong or close answer is sent) whatever happens. Not after a full read: see
                # read_batch().
                new_scope = self._new_wait_scope
                if new_scope is None:
                    # The running backend's scope class, called directly: anyio.CancelScope(...)
                    # returns one from __new__, and Python then runs its __init__ again, which
                    # builds the scope twice (+1.1 µs on trio, +1.6 µs on asyncio, per read).
                    new_scope = self._new_wait_scope = type(anyio.CancelScope())
                scope = self._wait_scope = new_scope(deadline=deadline)
                try:
                    with scope:
                        data = await self._stream.receive(self._read_size)
                finally:
                    self._wait_scope = None
                if scope.cancelled_caught:
                    return  # interrupt_read() or the deadline: nothing was read
            else:
                data = await self._stream.receive(self._read_size)
        except anyio.EndOfStream:
            data = None
        except _STREAM_GONE:
            data = None
        if self._state is _CLOSED:
            await self._close_socket()  # the close handshake is complete; nothing more to read
            return
        if data is None:
            # Closed without a close frame: code 1006 (RFC 6455 7.1.5).
            self._reader.receive_eof()
            self._state = _CLOSED
            self._set_error(WebSocketAbnormalClosureError())
        else:
            self.bytes_received += len(data)
            self._flooded = len(data) >= self._read_size // 2
            self._reader.receive_data(data)
        await self._handle_events()

    async def _handle_events(self) -> None:
        outgoing = bytearray()
        pending = self._pending
        deliver = self._error is None  # messages that come after the end are dropped
        for event in self._reader.events():
            if isinstance(event, _MESSAGE_TYPES):
                if deliver:
                    if pending is _NO_PENDING:
                        pending = self._pending = deque()
                    pending.append(event)
            else:
                outgoing += self._handle_control(event)
                deliver = self._error is None
        if outgoing:
            # A pong or close answer is owed to the peer whoever reads, even if the reading task
            # is being cancelled (a consumer's receive(timeout=...) reads the socket itself);
            # bounded, so a peer that stopped reading cannot hold a cancellation up for long.
            with anyio.CancelScope(shield=True), anyio.move_on_after(self._close_timeout):
                await self._write(bytes(outgoing))
        if self._state is _CLOSED:
            await self._close_socket()
        elif self._failing and not self._draining:
            # We failed the connection (protocol error, too big): give the peer close_timeout to
            # answer our close frame, then drop the socket (RFC 6455 7.1.1).
            self._draining = True
            with anyio.move_on_after(self._close_timeout):
                while self._awaiting_peer_close():
                    await self._read_chunk()
            await self._close_socket()

    def _awaiting_peer_close(self) -> bool:
        return not self._socket_closed and self._state is not _CLOSED

    def _handle_control(self, event: Ping | Pong | Close | ProtocolFailure) -> bytes:
        if isinstance(event, Ping):
            return encode_frame(OP_PONG, event.payload) if self._state is _OPEN else b""
        if isinstance(event, Pong):
            self._handle_pong(event.payload)
            return b""
        if isinstance(event, Close):
            return self._handle_close(event)
        return self._handle_failure(event)

    def _handle_pong(self, payload: bytes) -> None:
        waiters = self._pong_waiters.get(bytes(payload), ())
        matched = next((waiter for waiter in waiters if not waiter.answered), None)
        if matched is None:
            return  # an unsolicited pong (RFC 6455 5.5.3): a heartbeat, nothing to answer
        # A peer may answer only the most recent of several pings (5.5.3): a pong answers its
        # ping and every ping sent before it, so earlier ping() calls do not wait in vain.
        called: list[_PongWaiter] = []
        for pending in self._pong_waiters.values():
            for waiter in pending:
                if not waiter.answered and waiter.order <= matched.order:
                    waiter.answered = True
                    waiter.wake.set()
                    if waiter.on_pong is not None:
                        called.append(waiter)
        if called:
            # send_ping()'s waiters have nobody waiting to remove them: done here, the most
            # recent ping's callback last.
            now = anyio.current_time()
            called.sort(key=lambda waiter: waiter.order)
            for waiter in called:
                self._forget_waiter(waiter)
            for waiter in called:
                assert waiter.on_pong is not None
                waiter.on_pong(now - waiter.sent_at)

    def _handle_close(self, event: Close) -> bytes:
        if self._state is _OPEN:
            # The peer started the close handshake: answer with its code and reason (RFC 6455
            # 5.5.1), or with an empty close frame if it gave none (1005).
            self._state = _REMOTE_CLOSING
            self._set_error(
                WebSocketClosedError(
                    "connection closed by the server", code=event.code, reason=event.reason
                )
            )
            code = None if event.code == 1005 else event.code
            answer = encode_frame(OP_CLOSE, close_payload(code, event.reason))
            self._state = _CLOSED
            return answer
        # The peer answered our close frame (the reader reports no more than one close).
        self._state = _CLOSED
        self._set_error(
            WebSocketClosedError("connection closed", code=event.code, reason=event.reason)
        )
        return b""

    def _handle_failure(self, event: ProtocolFailure) -> bytes:
        # The reader found a violation (bad UTF-8, reserved bits, a message over the limit, ...)
        # and tells us which close code to fail the connection with; sending it is up to us.
        if event.code == 1009:
            return self._fail(WebSocketMessageTooBigError(self._max_message_size))
        if self._state is _OPEN:
            return self._fail(WebSocketProtocolError(event.reason, code=event.code))
        # We had sent our close frame already: the connection ends as closed by us.
        self._set_error(
            WebSocketClosedError("connection closed", code=event.code, reason=event.reason)
        )
        return b""

    def _fail(self, error: WebSocketProtocolError) -> bytes:
        self._set_error(error)
        self._failing = True
        if self._state is _OPEN:
            self._state = _LOCAL_CLOSING
            return encode_frame(OP_CLOSE, close_payload(error.code))
        return b""

    def _set_error(self, error: WebSocketError) -> None:
        if self._error is None:
            self._error = error
            self._reader.discard_messages()  # read on for the close frame, drop what else comes
            if isinstance(error, WebSocketClosedError | WebSocketProtocolError):
                self._close_code = error.code
            if isinstance(error, WebSocketClosedError):
                self._close_reason = error.reason
        self._wake_pingers()

    def _wake_pingers(self) -> None:
        for waiters in self._pong_waiters.values():
            for waiter in waiters:
                waiter.wake.set()

    # The write path: one lock, one place that maps errors.

    async def _send_frame(self, opcode: int, payload: str | bytes) -> None:
        lock = self._send_lock
        # A socket stream checks for cancellation before it writes anything, so a free lock
        # needs no check of its own. A TLS stream does not: it encrypts first, and a record
        # lost to a cancellation after that would break the stream.
        if not (self._send_checks_first and lock.acquire_nowait()):
            await lock.acquire()
        try:
            if self._error is not None or self._state is not _OPEN:
                raise self._closed_for_sending()
            if isinstance(payload, str):
                payload = payload.encode()
            # Compressed under the send lock: with context takeover, messages share the state.
            if self._deflater is not None and opcode < OP_CLOSE:
                compressed = self._deflater.compress(payload)
                if compressed is not None:
                    await self._write_locked(encode_frame(opcode, compressed, rsv1=True))
                    return
            await self._write_locked(encode_frame(opcode, payload))
        finally:
            lock.release()

    async def _send_close(self, code: int, reason: str) -> None:
        async with self._send_lock:
            if self._error is not None or self._state is not _OPEN:
                raise self._closed_for_sending()
            frame = encode_frame(OP_CLOSE, close_payload(code, reason))
            self._state = _LOCAL_CLOSING
            await self._write_locked(frame)

    async def _write(self, data: bytes) -> None:
        async with self._send_lock:
            await self._write_locked(data)

    async def _write_locked(self, data: bytes) -> None:
        if self._socket_closed:
            raise self._closed_for_sending()
        try:
            await self._stream.send(data)
        except _STREAM_GONE:
            self._set_error(WebSocketAbnormalClosureError())
            raise self._closed_for_sending() from None
        self.bytes_sent += len(data)

    def _closed_for_sending(self) -> WebSocketClosedError:
        if isinstance(self._error, WebSocketClosedError):
            return self._error
        return WebSocketClosedError("connection is closed", code=self._close_code or 1006)
