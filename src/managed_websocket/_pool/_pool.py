"""ManagedWebSocketPool: many ManagedWebSockets (shards) behind one consumer stream.

Shape. ``run()`` owns one task group. Each shard runs in it as one task that owns the shard's own
small task group: the shard's manager (``ws.run()``), its forwarder into the merged stream
(``_merge.py``), and, while somebody listens to ``pool.events()``, a relay of its events. A
pool-wide task rotates the shards in turn when ``max_connection_age`` is set (``_stagger.py``).

Placement (``_placement.py``) is decided synchronously, before anything awaits, so concurrent
``subscribe()`` calls never overfill a shard. Every dial of every shard goes through the URL
provider the pool gives its managers, which waits for a ``connect_rate`` slot (``_rate.py``):
first dials, reconnects and rotations alike.

A shard whose manager fails for good is reported (:class:`ShardFailed`, ``shard.state`` FAILED,
``shard.error``) and its channels are placed again. The pool itself fails, with that shard's
error, only when no other shard is connected at that moment: every dial is failing.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.abc

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from .._events import EventHub, EventListener, LifecycleEvent, SubscriptionFailed
from .._exceptions import (
    WebSocketClosedError,
    WebSocketError,
    WebSocketQueueFullError,
    WebSocketSubscriptionError,
    WebSocketTimeoutError,
    describe,
)
from .._manager import ManagedWebSocket
from .._manager._groups import enter_owner_group, exit_owner_group, unwrap_group
from .._settings import UrlProvider, resolve_settings
from .._url import parse_ws_url
from ._events import ChannelsReplaced, PoolEvent, ShardClosed, ShardFailed, ShardOpened
from ._merge import Merge, MergeClosed
from ._options import (
    check_connect_rate,
    check_grace,
    check_max_connections,
    check_per_connection,
)
from ._placement import Placement, PlacementFull
from ._rate import DialSchedule
from ._shard import PoolShard, ShardState, ShardStatus
from ._stagger import plan_rotations
from ._stats import PoolStats

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

    from .._settings import ManagedWebSocketOptions

__all__ = [
    "MERGE_BUFFER",
    "ManagedWebSocketPool",
    "PoolEventListener",
    "PoolIterator",
    "open_managed_pool",
]

logger = logging.getLogger("managed_websocket")

#: Batches the merged stream holds before forwarders wait (each batch: one socket read).
MERGE_BUFFER = 64

#: A failed rotation of a shard is tried again after min(2 ** failures, this) seconds.
MAX_ROTATION_RETRY = 60.0

_GONE = (ShardState.STOPPED, ShardState.FAILED)


class ManagedWebSocketPool:
    """Many managed connections (shards) to one URL, filled up to a per-connection cap, with one
    merged consumer stream. Create it with :func:`open_managed_pool`."""

    def __init__(
        self,
        url: str | UrlProvider,
        *,
        max_subscriptions_per_connection: int,
        max_connections: int | None = None,
        connect_rate: tuple[int, float] = (1, 1.0),
        empty_shard_grace: float = 30.0,
        **options: Unpack[ManagedWebSocketOptions],
    ) -> None:
        cap = check_per_connection(max_subscriptions_per_connection)
        self._placement = Placement(cap, check_max_connections(max_connections))
        self._rate = DialSchedule(*check_connect_rate(connect_rate))
        self._grace = check_grace(empty_shard_grace)
        if isinstance(url, str):
            parse_ws_url(url)  # a bad fixed URL is the caller's error: raise now
        elif not callable(url):
            raise TypeError(
                f"url must be a str or a zero-argument callable returning one, "
                f"not {type(url).__name__}"
            )
        self._url = url
        # Validated now, like a manager's; the pool rotates (staggered) instead of each shard.
        self._max_age = resolve_settings(options).max_connection_age
        self._options: dict[str, Any] = {
            k: v for k, v in options.items() if k != "max_connection_age"
        }
        self._shards: dict[int, PoolShard] = {}
        self._merge = Merge(MERGE_BUFFER)
        self._hub = EventHub()
        self._stats = PoolStats()
        self._group: anyio.abc.TaskGroup | None = None
        self._owner_group: anyio.abc.TaskGroup | None = None
        self._stopping: anyio.Event | None = None
        self._done: anyio.Event | None = None
        self._running = False
        self._closed = False  # shutting down or shut down: no new shard, no subscribe
        self._fatal: BaseException | None = None
        self._relaying = False  # somebody called events(): relay every shard's events
        self._rotation_wake: anyio.CancelScope | None = None

    def __repr__(self) -> str:
        live = sum(shard.state not in _GONE for shard in self._shards.values())
        return f"<ManagedWebSocketPool {live} shards, {self._subscription_count()} channels>"

    # ------------------------------------------------------------------ lifetime

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the pool until :meth:`shutdown`; for ``await task_group.start(pool.run)``.

        Reports started at once (shards open as :meth:`subscribe` needs them). Raises the
        fatal error (e.g. :class:`WebSocketReconnectError`) if the pool fails.
        """
        if self._running or self._closed:
            raise RuntimeError("a ManagedWebSocketPool can run only once")
        self._running = True
        self._stopping = anyio.Event()
        self._done = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                self._group = tg
                if self._max_age is not None:
                    tg.start_soon(self._rotations, self._max_age)
                task_status.started()
                await self._stopping.wait()
                await self._close_all()
                # The runners end with their shards; the rotation task is all that is left.
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise unwrap_group(group) from None
        finally:
            self._closed = True
            self._group = None
            for shard in self._shards.values():
                shard._ready.set()
            self._merge.close(self._fatal)
            self._hub.close()
            self._done.set()
        if self._fatal is not None:
            raise self._fatal

    async def __aenter__(self) -> Self:
        self._owner_group = await enter_owner_group(self.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        group, self._owner_group = self._owner_group, None
        assert group is not None, "__aexit__ without __aenter__"
        return await exit_owner_group(group, self.shutdown, exc_type, exc, tb)

    async def shutdown(self) -> None:
        """Close every shard gracefully and end :meth:`run`; consumers drain what was received,
        then their iteration ends. Idempotent."""
        if not self._running:
            self._closed = True
            self._merge.close()
            self._hub.close()
            return
        assert self._stopping is not None
        assert self._done is not None
        self._stopping.set()
        await self._done.wait()

    aclose = shutdown

    def _fail(self, error: BaseException) -> None:
        if self._fatal is None:
            self._fatal = error
            logger.error("! pool failed: every shard is down: %s", describe(error))
        if self._stopping is not None:
            self._stopping.set()

    async def _close_all(self) -> None:
        self._closed = True
        # Forwarders stop waiting for room: what the shards still hold goes to the tail.
        for shard in self._shards.values():
            if shard._send_scope is not None:
                shard._send_scope.cancel()
        async with anyio.create_task_group() as tg:
            for shard in list(self._shards.values()):
                tg.start_soon(self._close_shard, shard, "shutdown")

    async def _close_shard(self, shard: PoolShard, reason: str) -> None:
        if shard.state in _GONE:
            return
        shard.state = ShardState.STOPPED
        if shard.grace_scope is not None:
            shard.grace_scope.cancel()
        self._placement.close(shard.index)
        self._stats.shards_closed += 1
        self._wake_rotations()
        await shard.ws.shutdown()
        self._publish(shard.index, ShardClosed(reason=reason))

    # ------------------------------------------------------------------ shards

    def _open_shard(self, index: int, channels: int) -> PoolShard:
        assert self._group is not None
        ws = ManagedWebSocket(self._dial_url, **cast("ManagedWebSocketOptions", self._options))
        shard = PoolShard(index, ws)
        self._shards[index] = shard
        self._stats.shards[index] = ws.stats
        self._stats.shards_opened += 1
        self._publish(index, ShardOpened(channels=channels))
        self._group.start_soon(self._run_shard, shard)
        self._wake_rotations()
        return shard

    async def _dial_url(self) -> str:
        """Every dial of every shard: wait for a connect_rate slot, then the URL."""
        now = anyio.current_time()
        at = self._rate.reserve(now)
        self._stats.rate_limit_waits += at - now
        await anyio.sleep_until(at)
        url = self._url
        if isinstance(url, str):
            return url
        value = url()
        return await value if inspect.isawaitable(value) else value

    async def _run_shard(self, shard: PoolShard) -> None:
        ws = shard.ws
        if self._closed or shard.state in _GONE:  # the pool closed before this task ran
            shard.state = ShardState.STOPPED
            shard._ready.set()
            return
        async with anyio.create_task_group() as tg:
            shard._group = tg
            tg.start_soon(self._forward, shard)
            if self._relaying:
                self._relay(shard)
            if not self._placement.channels_of(shard.index):
                self._start_grace(shard)
            try:
                await ws.run(task_status=cast("anyio.abc.TaskStatus[None]", ShardStatus(shard)))
            except WebSocketError as exc:
                await self._shard_failed(shard, exc)
            finally:
                shard._ready.set()
                self._wake_rotations()
        shard._group = None

    async def _forward(self, shard: PoolShard) -> None:
        """Hand the shard's batches to the merged stream until its manager ends."""
        index = shard.index
        batches = shard.ws.batches()
        merge = self._merge
        to_tail = False
        with merge.sender() as send:
            while True:
                item: list[Any] | BaseException
                try:
                    item = await batches.__anext__()
                except StopAsyncIteration:
                    return
                except WebSocketQueueFullError as exc:
                    item = exc  # overflow="error": the gap, at its place in the stream
                except WebSocketError:
                    return  # the manager's fatal error: its runner reports it
                if not to_tail:
                    try:
                        send.send_nowait((index, item))
                        continue
                    except anyio.WouldBlock:
                        pass
                    with anyio.CancelScope() as scope:
                        shard._send_scope = scope
                        if self._closed:
                            scope.cancel()
                        await send.send((index, item))
                    shard._send_scope = None
                    if not scope.cancelled_caught:
                        continue
                    to_tail = True
                merge.tail.append((index, item))

    async def _shard_failed(self, shard: PoolShard, error: WebSocketError) -> None:
        shard.state = ShardState.FAILED
        shard.error = error
        shard._ready.set()
        if shard.grace_scope is not None:
            shard.grace_scope.cancel()
        channels = self._placement.close(shard.index)
        self._stats.shards_failed += 1
        logger.error(
            "! shard %d failed (%d channels to place again): %s",
            shard.index,
            len(channels),
            describe(error),
        )
        self._publish(shard.index, ShardFailed(error=error, channels=len(channels)))
        if self._closed:
            return
        others = [s for s in self._shards.values() if s is not shard and s.state not in _GONE]
        if channels and not any(s.ws.is_connected for s in others):
            self._fail(error)
            return
        if not channels:
            return
        try:
            plan, errors = await self._place(channels)
        except WebSocketSubscriptionError as exc:  # no room left (max_connections)
            self._publish(
                shard.index,
                SubscriptionFailed(channels=exc.channels, code=exc.code, reason=exc.reason),
            )
            return
        except WebSocketClosedError:
            return
        for failed in errors:
            self._publish(
                shard.index,
                SubscriptionFailed(
                    channels=failed.channels, code=failed.code, reason=failed.reason
                ),
            )
        self._stats.channels_replaced += len(channels)
        self._publish(
            shard.index,
            ChannelsReplaced(
                channels=tuple(channels),
                placement={index: len(chunk) for index, chunk in plan.items()},
            ),
        )

    def _start_grace(self, shard: PoolShard) -> None:
        if shard.grace_scope is None and shard._group is not None and shard.state not in _GONE:
            shard.state = ShardState.EMPTY
            shard._group.start_soon(self._close_when_unused, shard)

    async def _close_when_unused(self, shard: PoolShard) -> None:
        with anyio.CancelScope() as scope:
            shard.grace_scope = scope
            await anyio.sleep(self._grace)
        if shard.grace_scope is scope:
            shard.grace_scope = None
        if scope.cancel_called or shard.state is not ShardState.EMPTY:
            return
        if shard.index in self._placement and not self._placement.channels_of(shard.index):
            await self._close_shard(shard, "empty")

    # ------------------------------------------------------------------ subscriptions

    async def subscribe(self, *channels: str) -> None:
        """Place the channels on shards and subscribe them there: shards with room first (each
        up to ``max_subscriptions_per_connection``), then new shards, dialled within
        ``connect_rate``. Returns once each shard has subscribed its share (acknowledged, with
        an acknowledging ``subscription_protocol``); a new shard's share after it connected.

        Raises:
            WebSocketSubscriptionError: no room (``max_connections`` shards are full; nothing
                was subscribed then), or a shard's server refused some channels (the others
                are subscribed).
            WebSocketClosedError: the pool is closed.
        """
        self._check_open()
        _, errors = await self._place(channels)
        self._check_open()
        if errors:
            raise _combined(errors, "subscribe")

    async def unsubscribe(self, *channels: str) -> None:
        """Remove the channels from their shards. A shard left without channels is closed once
        ``empty_shard_grace`` seconds pass without new ones."""
        self._check_open()
        removed = self._placement.release(channels)
        errors: list[WebSocketSubscriptionError] = []
        for index, chunk in removed.items():
            shard = self._shards[index]
            try:
                await shard.ws.unsubscribe(*chunk)
            except WebSocketSubscriptionError as exc:
                errors.append(exc)
            if index in self._placement and not self._placement.channels_of(index):
                self._start_grace(shard)
        if errors:
            raise _combined(errors, "unsubscribe")

    async def _place(
        self, channels: tuple[str, ...] | list[str]
    ) -> tuple[dict[int, list[str]], list[WebSocketSubscriptionError]]:
        if self._closed or self._group is None:
            raise WebSocketClosedError("the pool is not running", code=1000)
        try:
            plan = self._placement.assign(channels)
        except PlacementFull as full:
            raise WebSocketSubscriptionError(full.channels, str(full)) from None
        for index, chunk in plan.items():
            shard = self._shards.get(index)
            if shard is None:
                self._open_shard(index, len(chunk))
            elif shard.state is ShardState.EMPTY:
                shard.state = ShardState.ACTIVE
                if shard.grace_scope is not None:
                    shard.grace_scope.cancel()
                    shard.grace_scope = None
        errors: list[WebSocketSubscriptionError] = []
        if len(plan) == 1:
            (index, chunk), *_ = plan.items()
            await self._subscribe_on(self._shards[index], chunk, errors)
        else:
            async with anyio.create_task_group() as tg:
                for index, chunk in plan.items():
                    tg.start_soon(self._subscribe_on, self._shards[index], chunk, errors)
        return plan, errors

    async def _subscribe_on(
        self, shard: PoolShard, chunk: list[str], errors: list[WebSocketSubscriptionError]
    ) -> None:
        try:
            await shard._ready.wait()
        except BaseException:
            # Cancelled before the shard had them: they are not placed after all.
            self._release_from(shard, chunk)
            raise
        if shard.state in _GONE:
            return  # failed: its channels are placed again; closed: the pool is closing
        try:
            # Shielded: once sent (and, with acks, answered) the shard has them; the wait is
            # bounded by the manager (ack_timeout).
            with anyio.CancelScope(shield=True):
                await shard.ws.subscribe(*chunk)
        except WebSocketSubscriptionError as exc:
            self._release_from(shard, exc.channels)
            errors.append(exc)

    def _release_from(self, shard: PoolShard, channels: tuple[str, ...] | list[str]) -> None:
        mine = [c for c in channels if self._placement.owner(c) == shard.index]
        self._placement.release(mine)

    def _check_open(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._closed:
            raise WebSocketClosedError("the pool is closed", code=1000)

    # ------------------------------------------------------------------ rotations

    async def _rotations(self, max_age: float) -> None:
        """Rotate connected shards one at a time, ``max_age / shards`` apart (``_stagger.py``)."""
        last_started: float | None = None
        retry_at: dict[int, float] = {}
        failures: dict[int, int] = {}
        while True:
            now = anyio.current_time()
            # A shard not connected now is due no sooner than a max_age from now (its next
            # connection starts later): counted, so the windows and the next wake-up are right.
            due = {
                index: max(now + max_age - shard.ws.connection_duration, retry_at.get(index, 0.0))
                for index, shard in self._shards.items()
                if shard.state not in _GONE
            }
            at, chosen = float("inf"), -1
            if due:
                plan = plan_rotations(
                    due, gap=max_age / len(due), now=now, last_started=last_started
                )
                at, chosen = plan[0]
            if at > now:
                with anyio.CancelScope() as scope:
                    self._rotation_wake = scope
                    await anyio.sleep_until(at)
                self._rotation_wake = None
                continue  # plan again: shards may have come or gone meanwhile
            shard = self._shards[chosen]
            if not shard.ws.is_connected:  # reconnecting: its own new connection is young
                retry_at[chosen] = now + max_age / len(due)
                continue
            last_started = now
            rotated = await shard.ws.rotate()
            if rotated:
                retry_at.pop(chosen, None)
                failures.pop(chosen, None)
            else:
                failures[chosen] = failures.get(chosen, 0) + 1
                delay = min(2.0 ** failures[chosen], MAX_ROTATION_RETRY)
                retry_at[chosen] = anyio.current_time() + delay

    def _wake_rotations(self) -> None:
        if self._rotation_wake is not None:
            self._rotation_wake.cancel()

    # ------------------------------------------------------------------ consuming

    def __aiter__(self) -> PoolIterator:
        return self.stream()

    def stream(self, *, with_shard: bool = False) -> PoolIterator:
        """Every message of every shard, merged, until the pool closes (then it ends) or fails
        (then it raises the error). ``with_shard=True`` yields ``(shard_index, message)``."""
        return PoolIterator(self._merge, batches=False, with_shard=with_shard)

    def batches(self, *, with_shard: bool = False) -> PoolIterator:
        """Like :meth:`stream`, but yields lists: the messages available at once from one
        shard (``(shard_index, messages)`` with ``with_shard=True``)."""
        return PoolIterator(self._merge, batches=True, with_shard=with_shard)

    async def receive(self, timeout: float | None = None) -> Any:
        """The next message from any shard.

        Raises:
            WebSocketTimeoutError: nothing arrived within ``timeout``.
            WebSocketClosedError: the pool was closed and every message was taken.
        """
        with anyio.move_on_after(timeout):
            try:
                return (await self._merge.get())[1]
            except MergeClosed:
                raise WebSocketClosedError("the pool is closed", code=1000) from None
        raise WebSocketTimeoutError("receive", timeout if timeout is not None else 0.0)

    # ------------------------------------------------------------------ observing

    def events(self, buffer: int = 256) -> PoolEventListener:
        """A new listener of every shard's events, each a :class:`PoolEvent` naming its shard.

        Bounded like ``ws.events()``: what does not fit in ``buffer`` is dropped and counted in
        ``listener.dropped``. Events of a shard are relayed from the first call on.
        """
        listener = PoolEventListener(self._hub.listen(buffer))
        if not self._relaying:
            self._relaying = True
            for shard in self._shards.values():
                if shard._group is not None:
                    self._relay(shard)
        return listener

    def _relay(self, shard: PoolShard) -> None:
        assert shard._group is not None
        listener = shard.ws.events(0)  # now, so nothing published from here on is missed
        shard._group.start_soon(self._relay_events, shard.index, listener)

    async def _relay_events(self, index: int, listener: EventListener) -> None:
        async with listener:
            async for event in listener:
                self._hub.publish(PoolEvent(shard=index, event=event, at=event.at))

    def _publish(self, index: int, event: LifecycleEvent) -> None:
        self._hub.publish(PoolEvent(shard=index, event=event, at=event.at))

    @property
    def subscriptions(self) -> dict[int, tuple[str, ...]]:
        """shard index -> its channels, for every open shard (an empty one while in grace)."""
        return self._placement.shards

    def _subscription_count(self) -> int:
        return sum(map(len, self._placement.shards.values()))

    @property
    def shards(self) -> dict[int, PoolShard]:
        """Every shard the pool opened, by index, closed and failed ones included."""
        return dict(self._shards)

    @property
    def stats(self) -> PoolStats:
        """Per-shard :class:`WebSocketStats` (live), their ``total``, and the pool's counters."""
        return self._stats

    @property
    def is_closed(self) -> bool:
        """True once the pool is shutting down, shut down, or failed."""
        return self._closed


class PoolIterator:
    """``async for`` over a pool's merged messages (or batches, or ``(shard, ...)`` pairs)."""

    __slots__ = ("_next", "_with_shard")

    def __init__(self, merge: Merge, *, batches: bool, with_shard: bool) -> None:
        self._next: Callable[[], Awaitable[tuple[int, Any]]] = (
            merge.get_batch if batches else merge.get
        )
        self._with_shard = with_shard

    def __aiter__(self) -> PoolIterator:
        return self

    async def __anext__(self) -> Any:
        try:
            shard, item = await self._next()
        except MergeClosed:
            raise StopAsyncIteration from None
        return (shard, item) if self._with_shard else item


class PoolEventListener:
    """``async for event in pool.events()``: :class:`PoolEvent` values. ``aclose()`` (or
    ``async with``) stops listening."""

    __slots__ = ("_listener",)

    def __init__(self, listener: EventListener) -> None:
        self._listener = listener

    @property
    def dropped(self) -> int:
        """Events that did not fit in the buffer."""
        return self._listener.dropped

    def __aiter__(self) -> PoolEventListener:
        return self

    async def __anext__(self) -> PoolEvent:
        return cast(PoolEvent, await self._listener.__anext__())

    async def aclose(self) -> None:
        await self._listener.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _combined(
    errors: list[WebSocketSubscriptionError], operation: str
) -> WebSocketSubscriptionError:
    if len(errors) == 1:
        return errors[0]
    channels = [channel for error in errors for channel in error.channels]
    first = errors[0]
    return WebSocketSubscriptionError(channels, first.reason, code=first.code, operation=operation)


def open_managed_pool(
    url: str | UrlProvider,
    *,
    max_subscriptions_per_connection: int,
    max_connections: int | None = None,
    connect_rate: tuple[int, float] = (1, 1.0),
    empty_shard_grace: float = 30.0,
    **options: Unpack[ManagedWebSocketOptions],
) -> ManagedWebSocketPool:
    """``async with open_managed_pool(url, max_subscriptions_per_connection=N) as pool:``.

    Args:
        url: A ``ws://``/``wss://`` URL, or a zero-argument callable (sync or async) returning
            one, called before every dial of every shard.
        max_subscriptions_per_connection: How many channels one connection may carry.
        max_connections: At most this many shards at once (None: no limit); a
            :meth:`~ManagedWebSocketPool.subscribe` that needs more raises
            :class:`WebSocketSubscriptionError`.
        connect_rate: ``(count, seconds)``: at most ``count`` dials per ``seconds``, spaced
            evenly (default one per second). Every dial counts: first dials, reconnects and
            rotations of every shard.
        empty_shard_grace: Seconds a shard left without channels stays open for new ones.
        options: Every :class:`ManagedWebSocketOptions` option, for each shard.
            ``max_connection_age`` is applied by the pool, rotating shards in turn.
    """
    return ManagedWebSocketPool(
        url,
        max_subscriptions_per_connection=max_subscriptions_per_connection,
        max_connections=max_connections,
        connect_rate=connect_rate,
        empty_shard_grace=empty_shard_grace,
        **options,
    )
