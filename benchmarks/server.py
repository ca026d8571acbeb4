"""The benchmark server: plain asyncio sockets and a hand-written HTTP upgrade.

The request path picks the mode:

- ``/text``: firehose of 100-byte JSON text frames. A pre-built ~1 MiB blob of frames is written
  again and again with ``loop.sock_sendall`` (no per-frame work), as fast as the kernel takes it.
- ``/binary``: the same with 64 KiB binary frames.
- ``/deflate``: the ``/text`` messages compressed (permessage-deflate, context takeover), accepted
  whatever the client offered: only for clients that offer it.
- ``/trades``: the same with 200-byte Binance-style trade messages (the decoded benchmark).
- ``/echo``: replies to every data frame with the same payload; answers pings and the close.
- ``/idle``: the echo handler, for connections that never send (the memory benchmark).
- ``/drop?id=K``: greets with ``{"dropped_at": T}`` (T: the monotonic time at which this server
  last dropped a connection of client K, or null), then on the text message ``drop`` notes the
  time and closes the TCP connection without a close frame (the reconnect benchmark).

Firehoses stop after the blob being written when the client sends a close frame, then answer it.
Run: ``python -m benchmarks.server [--port N]``; prints ``PORT <n>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

from . import wire

_READ_SIZE = 65536
_DROPS: dict[str, float] = {}  # client id -> monotonic time of its last dropped connection


class Peer:
    """One accepted connection after the upgrade: reads client frames, writes raw bytes."""

    def __init__(self, sock: socket.socket, leftover: bytes) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self._reader = wire.FrameReader()
        self._leftover = leftover

    async def read_frames(self) -> list[tuple[int, bytes]] | None:
        """The next frames the client sent; None at end of stream."""
        if self._leftover:
            data, self._leftover = self._leftover, b""
        else:
            data = await self.loop.sock_recv(self.sock, _READ_SIZE)
            if not data:
                return None
        return self._reader.feed(data)

    async def send(self, data: bytes) -> None:
        await self.loop.sock_sendall(self.sock, data)


Handler = Callable[[Peer, dict[str, str]], Awaitable[None]]


def _control_reply(first: int, payload: bytes) -> bytes | None:
    """The answer to a ping (a pong) or a close (a close echoing the code); None otherwise."""
    opcode = first & 0x0F
    if opcode == wire.OP_PING:
        return wire.frame(wire.OP_PONG, payload)
    if opcode == wire.OP_CLOSE:
        return wire.frame(wire.OP_CLOSE, payload[:2])
    return None


async def serve_echo(peer: Peer, query: dict[str, str]) -> None:
    while (frames := await peer.read_frames()) is not None:
        out = bytearray()
        for first, payload in frames:
            opcode = first & 0x0F
            if opcode == wire.OP_CLOSE:
                await peer.send(bytes(out) + wire.frame(wire.OP_CLOSE, payload[:2]))
                return
            reply = _control_reply(first, payload)
            if reply is not None:
                out += reply
            elif opcode != wire.OP_PONG:
                out += wire.frame(opcode, payload, fin=bool(first & 0x80))
        if out:
            await peer.send(bytes(out))


class _Firehose:
    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.stop = asyncio.Event()
        self.pending = bytearray()  # pongs and the close reply, sent between blobs

    async def watch(self) -> None:
        """Read client frames while the writer runs; stop it on a close frame or EOF."""
        while (frames := await self.peer.read_frames()) is not None:
            for first, payload in frames:
                reply = _control_reply(first, payload)
                if reply is not None:
                    self.pending += reply
                if first & 0x0F == wire.OP_CLOSE:
                    self.stop.set()
                    return
        self.stop.set()

    async def write(self, blob: bytes) -> None:
        while not self.stop.is_set():
            await self.peer.send(blob)
            if self.pending:
                data, self.pending = bytes(self.pending), bytearray()
                await self.peer.send(data)


def _firehose(blob: bytes) -> Handler:
    async def serve(peer: Peer, query: dict[str, str]) -> None:
        hose = _Firehose(peer)
        watcher = asyncio.ensure_future(hose.watch())
        try:
            await hose.write(blob)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    return serve


async def serve_drop(peer: Peer, query: dict[str, str]) -> None:
    client = query.get("id", "")
    greeting = json.dumps({"dropped_at": _DROPS.get(client)}).encode()
    await peer.send(wire.frame(wire.OP_TEXT, greeting))
    while (frames := await peer.read_frames()) is not None:
        for first, payload in frames:
            if first & 0x0F == wire.OP_TEXT and payload == b"drop":
                _DROPS[client] = time.monotonic()
                peer.sock.close()  # no close frame: an abnormal closure for the client
                return
            reply = _control_reply(first, payload)
            if reply is not None:
                await peer.send(reply)
                if first & 0x0F == wire.OP_CLOSE:
                    return


def routes() -> dict[str, Handler]:
    return {
        "/text": _firehose(wire.text_blob()),
        "/binary": _firehose(wire.binary_blob()),
        "/deflate": _firehose(wire.deflate_text_blob()),
        "/trades": _firehose(wire.trades_blob()),
        "/echo": serve_echo,
        "/idle": serve_echo,
        "/drop": serve_drop,
    }


async def _read_head(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> tuple[bytes, bytes]:
    buffer = b""
    while (parts := wire.split_head(buffer)) is None:
        data = await loop.sock_recv(sock, 4096)
        if not data:
            raise ConnectionError("closed during the upgrade")
        buffer += data
    return parts


async def handle(sock: socket.socket, table: dict[str, Handler]) -> None:
    loop = asyncio.get_running_loop()
    try:
        head, leftover = await _read_head(loop, sock)
        request = wire.parse_request(head)
        url = urlsplit(request.target)
        handler = table.get(url.path)
        if handler is None:
            await loop.sock_sendall(sock, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            return
        deflate = url.path == "/deflate"
        await loop.sock_sendall(sock, wire.upgrade_response(request.key, deflate=deflate))
        query = {name: values[0] for name, values in parse_qs(url.query).items()}
        await handler(Peer(sock, leftover), query)
    except OSError:
        pass  # the client went away: normal at the end of every firehose
    finally:
        sock.close()


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def serve(port: int) -> None:
    raise_fd_limit()
    table = routes()
    listener = socket.create_server(("127.0.0.1", port), backlog=4096)
    listener.setblocking(False)
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    while True:
        sock, _ = await loop.sock_accept(listener)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = loop.create_task(handle(sock, table))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
