"""FastLock: the per-connection lock that behaves like anyio.Lock(fast_acquire=True)."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from managed_websocket._sync import FastLock

pytestmark = pytest.mark.anyio


async def test_free_lock_is_taken_without_yielding() -> None:
    lock = FastLock()
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        async with lock:
            assert lock.locked()
            assert ran == []  # nothing else ran: no checkpoint on the fast path
        assert not lock.locked()


async def test_cancelled_task_cannot_take_a_free_lock() -> None:
    lock = FastLock()
    with anyio.CancelScope() as scope:
        scope.cancel()
        async with lock:
            pytest.fail("entered the lock in a cancelled scope")
    assert not lock.locked()


async def test_acquire_nowait_takes_only_a_free_lock() -> None:
    lock = FastLock()
    with anyio.CancelScope() as scope:  # noqa: ASYNC100 - the point: nothing here checks
        scope.cancel()
        assert lock.acquire_nowait()  # no cancellation check: the caller's next step checks
    assert lock.locked()
    assert not lock.acquire_nowait()
    lock.release()
    assert not lock.locked()


async def test_waiters_get_the_lock_in_order() -> None:
    lock = FastLock()
    order: list[int] = []

    async def take(n: int) -> None:
        async with lock:
            order.append(n)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg, lock:
        for n in range(3):
            tg.start_soon(take, n)
            await anyio.wait_all_tasks_blocked()  # queued in this order
        assert order == []
    assert order == [0, 1, 2]
    assert not lock.locked()


async def test_cancelled_waiter_leaves_the_queue() -> None:
    lock = FastLock()
    order: list[str] = []

    async def take(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            async with lock:
                order.append(name)

    first, second = anyio.CancelScope(), anyio.CancelScope()
    async with anyio.create_task_group() as tg, lock:
        tg.start_soon(take, "first", first)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(take, "second", second)
        await anyio.wait_all_tasks_blocked()
        first.cancel()
        await anyio.wait_all_tasks_blocked()
    assert order == ["second"]
    assert not lock.locked()


async def test_waiter_cancelled_after_the_hand_off_passes_the_lock_on() -> None:
    lock = FastLock()
    order: list[str] = []
    first = anyio.CancelScope()

    async def take(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            async with lock:
                order.append(name)

    async with anyio.create_task_group() as tg:
        await lock.__aenter__()
        tg.start_soon(take, "first", first)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(take, "second", anyio.CancelScope())
        await anyio.wait_all_tasks_blocked()
        await lock.__aexit__(None, None, None)  # hands the lock to "first"...
        first.cancel()  # ...which is cancelled before it runs (asyncio) or gets it (trio)
    assert not lock.locked()
    assert order in (["second"], ["first", "second"])
