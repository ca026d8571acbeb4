"""Helpers of the reliability tests: feeds of sequenced ticks, and a manager consuming one.

A *feed* is the server side of a test — the package's scripted test server, or an independent
server (``websockets`` on asyncio, ``trio-websocket`` on trio) — seen through one interface: how
many connections it accepted, whether a newer one has subscribed, and ``tick()`` (broadcast the next
sequenced tick). :func:`managed_feed` starts a feed (optionally behind the fault proxy), a manager
subscribed to it, and checks on the way out that nothing leaked.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio

from managed_websocket import DisconnectEvent, DisconnectReason, ManagedWebSocket
from managed_websocket.testing import (
    FaultProxy,
    WebSocketTestServer,
    open_fault_proxy,
    open_test_server,
)

__all__ = [
    "CHANNEL",
    "EPS",
    "FAST",
    "RECEIVE_TIMEOUT",
    "Feed",
    "PeerFeed",
    "Run",
    "ScriptedFeed",
    "assert_no_leaks",
    "expect_tick",
    "library_tasks",
    "managed_feed",
    "now",
    "run_until_it_fails",
    "tick_message",
    "wait_until",
]

#: The longest a single expected message may take to arrive.
RECEIVE_TIMEOUT = 10.0

#: Small, exact delays: explicit keywords are not clamped (SPEC 2).
FAST: dict[str, Any] = {
    "reconnect_delay": 0.02,
    "max_reconnect_delay": 0.05,
    "reconnect_jitter": 0,
    "connection_timeout": 5,
    "close_timeout": 1,
    "max_reconnect_attempts": 10,
}

#: Slack for lower bounds measured on the event loop's clock.
EPS = 0.01

CHANNEL = "ticks"
SUBSCRIBE = {"type": "subscribe", "channel": CHANNEL}


def now() -> float:
    return anyio.current_time()


def tick_message(seq: int) -> str:
    return json.dumps({"type": "tick", "seq": seq})


def is_subscribe(message: str | bytes) -> bool:
    try:
        return bool(json.loads(message) == SUBSCRIBE)
    except ValueError:
        return False


async def wait_until(predicate: Callable[[], bool], interval: float = 0.005) -> None:
    """Poll ``predicate`` (for conditions nothing signals); bound it with ``fail_after``."""
    while not predicate():  # noqa: ASYNC110 - nothing signals these conditions
        await anyio.sleep(interval)


def library_tasks(backend: str) -> list[str]:
    """Names of the running tasks of the library itself (its testing helpers excluded)."""
    if backend == "asyncio":
        import asyncio

        names = [task.get_name() for task in asyncio.all_tasks()]
    else:
        import trio.lowlevel

        names = []
        stack = [trio.lowlevel.current_root_task()]
        while stack:
            task = stack.pop()
            if task is None:
                continue
            names.append(task.name)
            for nursery in task.child_nurseries:
                stack.extend(nursery.child_tasks)
    return [
        name
        for name in names
        if name.startswith("managed_websocket.")
        and not name.startswith("managed_websocket.testing")
    ]


# -- The feeds: something that broadcasts sequenced ticks and sees subscriptions ----------------


class Feed:
    """The server side of a case, whichever server it is."""

    name = ""

    def __init__(self) -> None:
        self.seq = 0

    @property
    def connections(self) -> int:
        raise NotImplementedError

    def subscribed_since(self, index: int) -> bool:
        """Whether a connection numbered ``index`` or later is open and has subscribed."""
        raise NotImplementedError

    async def broadcast(self, message: str) -> int:
        raise NotImplementedError

    async def wait_all_closed(self) -> None:
        raise NotImplementedError

    async def tick(self) -> int:
        self.seq += 1
        assert await self.broadcast(tick_message(self.seq)) >= 1
        return self.seq


class ScriptedFeed(Feed):
    name = "test server"

    def __init__(self, server: WebSocketTestServer) -> None:
        super().__init__()
        self.server = server

    @property
    def connections(self) -> int:
        return len(self.server.clients)

    def subscribed_since(self, index: int) -> bool:
        return any(
            not record.closed and any(map(is_subscribe, record.messages))
            for record in self.server.clients[index:]
        )

    async def broadcast(self, message: str) -> int:
        return await self.server.broadcast(message)

    async def wait_all_closed(self) -> None:
        for record in self.server.clients:
            await record.wait_closed()


@dataclass
class PeerConnection:
    send: Callable[[str], Awaitable[None]]
    messages: list[str | bytes] = field(default_factory=list)
    open: bool = True


class PeerFeed(Feed):
    """An independent server: ``websockets`` (asyncio) or ``trio-websocket`` (trio)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.peers: list[PeerConnection] = []
        self.port = 0

    @property
    def connections(self) -> int:
        return len(self.peers)

    def subscribed_since(self, index: int) -> bool:
        return any(p.open and any(map(is_subscribe, p.messages)) for p in self.peers[index:])

    async def broadcast(self, message: str) -> int:
        sent = 0
        for peer in list(self.peers):
            if peer.open:
                with suppress(Exception):  # a connection that just went: not sent
                    await peer.send(message)
                    sent += 1
        return sent

    async def wait_all_closed(self) -> None:
        await wait_until(lambda: not any(p.open for p in self.peers))


async def _websockets_handler(feed: PeerFeed, ws: Any) -> None:
    from websockets.exceptions import ConnectionClosed

    peer = PeerConnection(ws.send)
    feed.peers.append(peer)
    try:
        async for message in ws:
            peer.messages.append(message)
    except ConnectionClosed:
        pass
    finally:
        peer.open = False


async def _trio_websocket_handler(feed: PeerFeed, request: Any) -> None:
    from trio_websocket import ConnectionClosed

    ws = await request.accept()
    peer = PeerConnection(ws.send_message)
    feed.peers.append(peer)
    try:
        while True:
            peer.messages.append(await ws.get_message())
    except ConnectionClosed:
        pass
    finally:
        peer.open = False


@asynccontextmanager
async def peer_feed(backend: str) -> AsyncIterator[PeerFeed]:
    if backend == "asyncio":
        from websockets.asyncio.server import serve

        feed = PeerFeed("websockets")
        async with serve(
            partial(_websockets_handler, feed),
            "127.0.0.1",
            0,
            ping_interval=None,
            compression=None,
        ) as server:
            feed.port = next(iter(server.sockets)).getsockname()[1]
            yield feed
    else:
        import trio
        from trio_websocket import serve_websocket

        feed = PeerFeed("trio-websocket")
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                partial(serve_websocket, partial(_trio_websocket_handler, feed), "127.0.0.1", 0),
                None,
            )
            feed.port = server.port
            yield feed
            nursery.cancel_scope.cancel()


# -- One managed connection to a feed, with what the manager reported -----------------------------


class Run:
    """A manager consuming a feed, and the connects/disconnects it reported."""

    def __init__(self, feed: Feed, proxy: FaultProxy | None) -> None:
        self.feed = feed
        self.proxy = proxy
        self.ws: ManagedWebSocket | None = None
        self.connect_times: list[float] = []
        self.disconnects: list[tuple[float, DisconnectReason]] = []
        self.disconnect_events: list[DisconnectEvent | None] = []  # last_disconnect at each one
        self.disconnected = anyio.Event()

    @property
    def manager(self) -> ManagedWebSocket:
        assert self.ws is not None
        return self.ws

    @property
    def server(self) -> WebSocketTestServer:
        assert isinstance(self.feed, ScriptedFeed)
        return self.feed.server

    @property
    def reasons(self) -> list[DisconnectReason]:
        return [reason for _, reason in self.disconnects]

    def on_connect(self) -> None:
        self.connect_times.append(now())

    def on_disconnect(self, reason: DisconnectReason) -> None:
        self.disconnects.append((now(), reason))
        self.disconnect_events.append(self.manager.last_disconnect)
        self.disconnected.set()
        self.disconnected = anyio.Event()

    async def recover(self, since: int | None = None) -> int:
        """Wait for a subscribed connection numbered ``since`` or later (default: a new one),
        broadcast a tick and receive it; return its sequence number."""
        await wait_until(partial(self.feed.subscribed_since, since or 0))
        seq = await self.feed.tick()
        await expect_tick(self.manager, seq)
        return seq


async def expect_tick(ws: ManagedWebSocket, seq: int) -> None:
    """Receive until tick ``seq``; older ticks (queued before a fault) are skipped."""
    while True:
        message = await ws.receive(timeout=RECEIVE_TIMEOUT)
        if message == {"type": "tick", "seq": seq}:
            return
        assert isinstance(message, dict), message
        assert message.get("type") == "tick", message
        assert message["seq"] < seq, message


@asynccontextmanager
async def managed_feed(
    backend: str,
    *,
    via_proxy: bool = False,
    peer: bool = False,
    server: WebSocketTestServer | None = None,
    url: str | None = None,
    **options: Any,
) -> AsyncIterator[Run]:
    """A feed, the fault proxy in front of it if asked, and a subscribed manager whose first
    tick has arrived.

    The feed is a new test server, or ``server`` (already running), or with ``peer`` the
    independent server of the backend (always behind the proxy). ``url`` overrides where the
    manager connects (e.g. a reverse proxy in front of ``server``). On the way out, after the
    manager has exited (and before the proxy and server do), checks that the server saw every
    connection closed and that no task of the library is left.
    """
    async with AsyncExitStack() as stack:
        feed: Feed
        if peer:
            peer_server = await stack.enter_async_context(peer_feed(backend))
            feed, port = peer_server, peer_server.port
        else:
            if server is None:
                server = await stack.enter_async_context(open_test_server(echo=False))
            feed = ScriptedFeed(server)
            port = server.port
        proxy = None
        if via_proxy or peer:
            proxy = await stack.enter_async_context(open_fault_proxy("127.0.0.1", port))
        run = Run(feed, proxy)
        if url is None:
            url = proxy.url_for("/ws") if proxy else f"ws://127.0.0.1:{port}/ws"
        run.ws = ManagedWebSocket(
            url,
            **{**FAST, "on_connect": run.on_connect, "on_disconnect": run.on_disconnect, **options},
        )
        async with run.ws:
            await run.ws.subscribe(CHANNEL)
            await run.recover(0)
            yield run
        await assert_no_leaks(feed, backend)


async def assert_no_leaks(feed: Feed, backend: str) -> None:
    with anyio.fail_after(5):
        await feed.wait_all_closed()
    assert library_tasks(backend) == []


async def run_until_it_fails(ws: ManagedWebSocket, inject: Callable[[], Awaitable[object]]) -> None:
    """Open ``ws``, run ``inject()``, then wait in the block until the manager fails (its
    failure leaves the ``async with`` block, which re-raises it)."""
    async with ws:
        await ws.subscribe(CHANNEL)
        await inject()
        await anyio.sleep_forever()
