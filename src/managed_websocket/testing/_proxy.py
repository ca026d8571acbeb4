"""A TCP fault proxy: put it between a client and any server to inject network faults.

The proxy knows nothing about WebSocket: it forwards bytes, and a test changes how while traffic
flows — add latency, cap the bandwidth, black-hole both directions (a network partition: the
sockets stay open, nothing gets through), cut every connection with FIN or RST, or refuse new
connections::

    from managed_websocket.testing import open_fault_proxy, open_test_server

    async with open_test_server() as server, open_fault_proxy("127.0.0.1", server.port) as proxy:
        ...  # point the code under test at proxy.url_for("/ws")
        proxy.blackhole()  # half-open: the client's pings go nowhere
        await proxy.cut(reset=True)  # every proxied connection gets RST

Theory of operation. One task group holds the accept loop and one task per proxied connection (a
*link*). A link runs two *pipes*, client → server and server → client. Each pipe is a reader task
and a writer task joined by a small bounded memory stream of ``(arrival time, chunk)`` pairs, so
latency delays each chunk without limiting throughput, and a writer that stops (black hole, slow
bandwidth) stops its reader after a few chunks: TCP backpressure still reaches the sender. An EOF
travels down the pipe like data (the other side gets a half-close after the bytes before it); a
reset or error on either side aborts the whole link with RST. Only ``anyio.sleep`` measures time,
so the proxy runs on trio's ``MockClock`` too.
"""

from __future__ import annotations

import math
import socket
import struct
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
from anyio.abc import Listener, SocketAttribute, SocketListener, SocketStream, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["FaultProxy", "ProxyCounters", "open_fault_proxy"]

_RECEIVE_SIZE = 65536

#: Chunks a pipe holds between its reader and its writer: the proxy buffers at most this many
#: reads (each up to 64 KiB) per direction and connection before backpressure stops the reader.
_PIPE_CHUNKS = 8

#: With a bandwidth cap, a writer sends at most this many seconds' worth of bytes at once.
_PACING_SLICE = 0.05

#: Everything that means "this side is gone" when reading or writing a socket.
_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)

_EOF = None  # the marker a reader sends down its pipe when its side half-closed


def open_fault_proxy(target_host: str, target_port: int, *, host: str = "127.0.0.1") -> FaultProxy:
    """Create a TCP proxy to ``target_host:target_port``; use it with ``async with``.

    The proxy listens on a free port of ``host`` once the block is entered, opens one connection
    to the target for each client it accepts, and forwards bytes both ways until one side closes.
    Leaving the block closes the listener and every connection (FIN).

    Args:
        target_host: The host to forward to (name or address).
        target_port: The port to forward to.
        host: The address to listen on. Use an IP literal: :meth:`FaultProxy.url_for` builds URLs
            from it.

    Returns:
        The proxy, not yet listening.
    """
    return FaultProxy(target_host, target_port, host=host)


@dataclass
class ProxyCounters:
    """What went through a :class:`FaultProxy` since it started.

    Attributes:
        connections_accepted: Client connections accepted at TCP level, refused ones included.
        connections_refused: Accepted connections closed at once because of :meth:`refuse_new`.
        connections_failed: Accepted connections closed because the target could not be reached.
        bytes_to_server: Bytes written to the target (client → server).
        bytes_to_client: Bytes written to clients (server → client).
    """

    connections_accepted: int = 0
    connections_refused: int = 0
    connections_failed: int = 0
    bytes_to_server: int = 0
    bytes_to_client: int = 0


class FaultProxy:
    """A TCP proxy whose faults a test switches on and off while traffic flows.

    Create it with :func:`open_fault_proxy`. The settings apply at once to every connection,
    current and future, in both directions.
    """

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._host = host
        self._port: int | None = None
        self._latency = 0.0
        self._bandwidth: float | None = None
        self._blackholed = False
        self._restored: anyio.Event | None = None  # set while not black-holed
        self._refusing = False
        self._listening = False
        self._links: set[_Link] = set()
        self._listener: SocketListener | None = None
        self._placeholder: socket.socket | None = None
        self._accept_scope: anyio.CancelScope | None = None
        self._task_group: TaskGroup | None = None
        self.counters: ProxyCounters = ProxyCounters()

    # -- Lifetime -------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task_group is not None:
            raise RuntimeError("a FaultProxy can only be started once")
        self._restored = anyio.Event()
        self._restored.set()
        listener = await anyio.create_tcp_listener(local_host=self._host, local_port=0)
        self._port = listener.extra(SocketAttribute.local_port)
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._listen(listener)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # The block's own exception is not handed to the task group, so a failing assertion comes
        # out as itself rather than wrapped in an ExceptionGroup.
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        try:
            await self._task_group.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop_listening()
                for link in list(self._links):  # accepted, but the task never started
                    await link.close()
                self._links.clear()
            if self._placeholder is not None:
                self._placeholder.close()
                self._placeholder = None

    # -- Where it listens -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the proxy listens on (kept while :meth:`refuse_new` stops listening).

        Raises:
            RuntimeError: If the proxy has not been started.
        """
        if self._port is None:
            raise RuntimeError("the proxy is not running; use `async with open_fault_proxy(...)`")
        return self._port

    def url_for(self, path: str = "/", scheme: str = "ws") -> str:
        """``ws://host:port/path`` for a client of the proxy; ``path`` gets a leading ``/``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        if not path.startswith("/"):
            path = "/" + path
        return f"{scheme}://{host}:{self.port}{path}"

    @property
    def active_connections(self) -> int:
        """Proxied connections that are open now."""
        return len(self._links)

    # -- Faults ---------------------------------------------------------------------------------

    @property
    def latency(self) -> float:
        """The delay added to every chunk, in seconds (see :meth:`set_latency`)."""
        return self._latency

    def set_latency(self, seconds: float) -> None:
        """Deliver each chunk ``seconds`` after it arrived, in each direction (one-way delay).

        Chunks already in flight are delivered by the new setting.

        Raises:
            ValueError: If ``seconds`` is negative or not finite.
        """
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"latency must be a finite number >= 0, not {seconds!r}")
        self._latency = float(seconds)

    @property
    def bandwidth(self) -> float | None:
        """The throughput cap in bytes per second, or None (see :meth:`set_bandwidth`)."""
        return self._bandwidth

    def set_bandwidth(self, bytes_per_second: float | None) -> None:
        """Cap each direction of each connection at ``bytes_per_second``; ``None`` lifts the cap.

        Raises:
            ValueError: If the rate is not a finite number > 0.
        """
        if bytes_per_second is not None and not (
            math.isfinite(bytes_per_second) and bytes_per_second > 0
        ):
            raise ValueError(f"bandwidth must be a finite number > 0, not {bytes_per_second!r}")
        self._bandwidth = None if bytes_per_second is None else float(bytes_per_second)

    @property
    def is_blackholed(self) -> bool:
        """True between :meth:`blackhole` and :meth:`restore`."""
        return self._blackholed

    def blackhole(self) -> None:
        """Stop forwarding in both directions, and keep every socket open (a network partition).

        Nothing is lost: bytes, half-closes and resets wait in the proxy and in the kernels'
        buffers, as TCP would retransmit them, and get through after :meth:`restore` — if the
        peers are still there. :meth:`cut` and leaving the ``async with`` block still close
        everything at once. New connections are accepted and connected too, then held the same
        way.
        """
        if not self._blackholed:
            self._blackholed = True
            self._restored = anyio.Event()

    def restore(self) -> None:
        """Forward again after :meth:`blackhole`."""
        self._blackholed = False
        if self._restored is not None:
            self._restored.set()

    async def cut(self, *, reset: bool = False) -> int:
        """Close every proxied connection, both sides, and wait until they are closed.

        Args:
            reset: Send RST (``SO_LINGER`` 0) instead of FIN.

        Returns:
            How many connections were cut.
        """
        links = list(self._links)
        for link in links:
            link.abort(reset=reset)
        for link in links:
            await link.closed.wait()
        return len(links)

    async def refuse_new(self, refuse: bool = True, *, stop_listening: bool = False) -> None:
        """Refuse new connections (existing ones are not touched), or serve them again.

        Args:
            refuse: ``True`` to refuse, ``False`` to accept and forward again.
            stop_listening: Close the listening socket, so clients get "connection refused"
                (RST to their SYN). The port stays reserved by a socket that is bound but not
                listening, and listening starts again on the same port when ``refuse`` is
                ``False``. Without it, the proxy accepts each new connection and closes it at
                once (FIN), before any byte is read: a server that dies mid-handshake.
        """
        if refuse:
            self._refusing = True
            if stop_listening and self._listening:
                await self._stop_listening()
                self._placeholder = _reserve_port(self._host, self.port)
            return
        self._refusing = False
        if not self._listening:
            if self._placeholder is not None:
                self._placeholder.close()
                self._placeholder = None
            listener = await anyio.create_tcp_listener(local_host=self._host, local_port=self.port)
            self._listen(listener)

    # -- Accepting ------------------------------------------------------------------------------

    def _listen(self, listener: Listener[SocketStream]) -> None:
        assert self._task_group is not None
        self._listener = _single(listener)
        self._listening = True
        self._accept_scope = anyio.CancelScope()
        self._task_group.start_soon(self._accept_loop, self._listener, self._accept_scope)

    async def _stop_listening(self) -> None:
        self._listening = False
        if self._accept_scope is not None:
            self._accept_scope.cancel()
            self._accept_scope = None
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.aclose()

    async def _accept_loop(self, listener: SocketListener, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
                try:
                    client = await listener.accept()
                except anyio.ClosedResourceError:
                    return
                self.counters.connections_accepted += 1
                # Registered before its task starts: cut() and exit see it (and close it, even
                # if the task never ran).
                link = _Link(self, client)
                self._links.add(link)
                assert self._task_group is not None
                self._task_group.start_soon(self._serve, link)

    async def _serve(self, link: _Link) -> None:
        try:
            await link.run(refuse=self._refusing)
        finally:
            self._links.discard(link)

    # -- Used by the pipes ----------------------------------------------------------------------

    async def _wait_to_forward(self, arrived: float) -> None:
        """Wait while black-holed, then until ``arrived`` + latency."""
        while self._blackholed:
            assert self._restored is not None
            await self._restored.wait()
        delay = arrived + self._latency - anyio.current_time()
        if delay > 0:
            await anyio.sleep(delay)
            # The partition may have come while the chunk was delayed.
            while self._blackholed:
                assert self._restored is not None
                await self._restored.wait()


class _Link:
    """One proxied connection: a client socket, an upstream socket and two pipes."""

    def __init__(self, proxy: FaultProxy, client: SocketStream) -> None:
        self._proxy = proxy
        self._client = client
        self._upstream: SocketStream | None = None
        self._scope = anyio.CancelScope()
        self._reset = False
        self.closed = anyio.Event()

    def abort(self, *, reset: bool) -> None:
        self._reset = self._reset or reset
        self._scope.cancel()

    async def run(self, *, refuse: bool) -> None:
        counters = self._proxy.counters
        try:
            with self._scope:
                if refuse:
                    counters.connections_refused += 1
                    return
                try:
                    self._upstream = await anyio.connect_tcp(*self._proxy._target)
                except OSError:
                    counters.connections_failed += 1
                    self._reset = True
                    return
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._pipe, self._client, self._upstream, True)
                    tg.start_soon(self._pipe, self._upstream, self._client, False)
        finally:
            await self.close()

    async def close(self) -> None:
        """Close both sockets (idempotent); also for a link whose task never ran."""
        with anyio.CancelScope(shield=True):
            await _close(self._client, reset=self._reset)
            if self._upstream is not None:
                await _close(self._upstream, reset=self._reset)
        self.closed.set()

    async def _pipe(self, source: SocketStream, sink: SocketStream, to_server: bool) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[float, bytes] | None](_PIPE_CHUNKS)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read, source, send)
            await self._write(receive, sink, to_server)

    async def _read(
        self, source: SocketStream, chunks: MemoryObjectSendStream[tuple[float, bytes] | None]
    ) -> None:
        async with chunks:
            while True:
                try:
                    data = await source.receive(_RECEIVE_SIZE)
                except anyio.EndOfStream:
                    await chunks.send(_EOF)
                    return
                except _GONE:
                    # A reset (or error) on one side resets the other — once it would get
                    # through: a partition holds it like any other packet.
                    await self._proxy._wait_to_forward(-math.inf)
                    self.abort(reset=True)
                    return
                try:
                    await chunks.send((anyio.current_time(), data))
                except anyio.BrokenResourceError:
                    return  # the writer has gone: the link is ending

    async def _write(
        self,
        chunks: MemoryObjectReceiveStream[tuple[float, bytes] | None],
        sink: SocketStream,
        to_server: bool,
    ) -> None:
        proxy = self._proxy
        counters = proxy.counters
        next_free = -math.inf  # bandwidth pacing: when the link may send again
        async with chunks:
            async for item in chunks:
                if item is _EOF:
                    await proxy._wait_to_forward(-math.inf)
                    with suppress(*_GONE):
                        await sink.send_eof()
                    return
                arrived, data = item
                await proxy._wait_to_forward(arrived)
                while data:
                    rate = proxy.bandwidth
                    piece = data if rate is None else data[: max(1, int(rate * _PACING_SLICE))]
                    data = data[len(piece) :]
                    if rate is not None:
                        now = anyio.current_time()
                        if next_free > now:
                            await anyio.sleep(next_free - now)
                        next_free = max(now, next_free) + len(piece) / rate
                    try:
                        await sink.send(piece)
                    except _GONE:
                        self.abort(reset=True)
                        return
                    if to_server:
                        counters.bytes_to_server += len(piece)
                    else:
                        counters.bytes_to_client += len(piece)


async def _close(stream: SocketStream, *, reset: bool) -> None:
    """Close a socket with FIN (half-close first, so the FIN is on the wire) or with RST."""
    if reset:
        sock: socket.socket | None = stream.extra(SocketAttribute.raw_socket, None)
        if sock is not None:
            with suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    else:
        with suppress(*_GONE):
            await stream.send_eof()
    with suppress(*_GONE):
        await stream.aclose()


def _single(listener: Listener[SocketStream]) -> SocketListener:
    """The one socket listener behind ``create_tcp_listener`` for an IP literal."""
    if isinstance(listener, SocketListener):
        return listener
    listeners: list[object] = list(getattr(listener, "listeners", ()))
    if len(listeners) == 1 and isinstance(listeners[0], SocketListener):
        return listeners[0]
    raise RuntimeError(f"expected one listening socket, got {listener!r}")


def _reserve_port(host: str, port: int) -> socket.socket:
    """Bind ``host:port`` without listening: the port stays ours, connections are refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
