"""The raw floors: no WebSocket parsing at all, only the upgrade and then counting bytes.

- ``anyio``: an anyio byte stream (``stream.receive(READ_SIZE)``) on the runner's backend: the
  fastest any anyio-based client on that backend could read.
- ``socket``: a blocking socket and ``recv_into`` a preallocated 4 MiB buffer: what the server
  and the kernel deliver, to show that the server is not the bottleneck.

Echo sends a pre-masked frame and reads until the whole reply (a 102-byte frame) is in.
"""

from __future__ import annotations

import socket
from time import perf_counter, perf_counter_ns
from urllib.parse import urlsplit

import anyio
import anyio.abc

from .. import wire
from .common import READ_SIZE, Client, Count, Echo, EchoPlan, StreamPlan

WARMUP_BYTES = 4 * 1024 * 1024
#: The blocking floor reads in big chunks: it measures what the server and kernel deliver.
SOCKET_READ_SIZE = 4 * 1024 * 1024
ECHO_FRAME = wire.masked_echo_frame()
ECHO_REPLY_SIZE = wire.TEXT_FRAME_SIZE


def _address(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return parts.hostname or "127.0.0.1", parts.port or 80, target


class AnyioFloor:
    async def _open(self, url: str) -> tuple[anyio.abc.SocketStream, int]:
        """Connect and upgrade; return the stream and how many frame bytes came with the 101."""
        host, port, target = _address(url)
        stream = await anyio.connect_tcp(host, port)
        request, _ = wire.upgrade_request(f"{host}:{port}", target)
        await stream.send(request)
        buffer = b""
        while (parts := wire.split_head(buffer)) is None:
            buffer += await stream.receive()
        return stream, len(parts[1])

    async def stream(self, url: str, plan: StreamPlan) -> Count:
        stream, seen = await self._open(url)
        async with stream:
            receive = stream.receive
            while seen < WARMUP_BYTES:
                seen += len(await receive(READ_SIZE))
            total = 0
            start = perf_counter()
            deadline = start + plan.seconds
            while True:
                total += len(await receive(READ_SIZE))
                now = perf_counter()
                if now >= deadline:
                    return Count(0, now - start, wire_bytes=total)

    async def echo(self, url: str, plan: EchoPlan) -> Echo:
        stream, _ = await self._open(url)
        async with stream:
            result = Echo()
            for index in range(plan.warmup + plan.rounds):
                start = perf_counter_ns()
                await stream.send(ECHO_FRAME)
                got = 0
                while got < ECHO_REPLY_SIZE:
                    got += len(await stream.receive(READ_SIZE))
                if index >= plan.warmup:
                    result.round_trips_ns.append(perf_counter_ns() - start)
            return result


class SocketFloor:
    """Blocking calls inside a coroutine: nothing else runs, so nothing waits on them."""

    def _open(self, url: str) -> tuple[socket.socket, int]:
        host, port, target = _address(url)
        sock = socket.create_connection((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request, _ = wire.upgrade_request(f"{host}:{port}", target)
        sock.sendall(request)
        buffer = b""
        while (parts := wire.split_head(buffer)) is None:
            buffer += sock.recv(65536)
        return sock, len(parts[1])

    async def stream(self, url: str, plan: StreamPlan) -> Count:
        sock, seen = self._open(url)
        with sock:
            view = memoryview(bytearray(SOCKET_READ_SIZE))
            recv_into = sock.recv_into
            while seen < WARMUP_BYTES:
                seen += recv_into(view)
            total = 0
            start = perf_counter()
            deadline = start + plan.seconds
            while True:
                total += recv_into(view)
                now = perf_counter()
                if now >= deadline:
                    return Count(0, now - start, wire_bytes=total)

    async def echo(self, url: str, plan: EchoPlan) -> Echo:
        sock, _ = self._open(url)
        with sock:
            view = memoryview(bytearray(READ_SIZE))
            result = Echo()
            for index in range(plan.warmup + plan.rounds):
                start = perf_counter_ns()
                sock.sendall(ECHO_FRAME)
                got = 0
                while got < ECHO_REPLY_SIZE:
                    got += sock.recv_into(view)
                if index >= plan.warmup:
                    result.round_trips_ns.append(perf_counter_ns() - start)
            return result


def make(variant: str) -> Client:
    return {"anyio": AnyioFloor(), "socket": SocketFloor()}[variant]
