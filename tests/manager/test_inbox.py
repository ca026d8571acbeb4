"""The inbox (batched delivery with overflow policies), without sockets."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import anyio
import pytest

from managed_websocket import WebSocketQueueFullError, WebSocketReconnectError
from managed_websocket._manager._inbox import Inbox, InboxClosed
from managed_websocket._settings import Overflow

pytestmark = pytest.mark.anyio


async def take(inbox: Inbox, n: int) -> list[object]:
    return [await inbox.get() for _ in range(n)]


@pytest.fixture
def make_inbox() -> Iterator[Callable[[int, Overflow], Inbox]]:
    """Inboxes that are closed after the test (closing releases both stream ends)."""
    made: list[Inbox] = []

    def make(queue_size: int, overflow: Overflow) -> Inbox:
        made.append(Inbox(queue_size, overflow))
        return made[-1]

    yield make
    for inbox in made:
        inbox.close()


async def test_batches_are_delivered_in_order_one_message_at_a_time(
    make_inbox: Callable[[int, Overflow], Inbox],
) -> None:
    inbox = make_inbox(0, "block")
    assert await inbox.put_batch([1, 2, 3]) == 0
    assert await inbox.put_batch([4]) == 0
    assert await take(inbox, 4) == [1, 2, 3, 4]
    assert inbox.queued == 0


async def test_get_batch_returns_everything_available(
    make_inbox: Callable[[int, Overflow], Inbox],
) -> None:
    inbox = make_inbox(0, "block")
    await inbox.put_batch([1, 2])
    await inbox.put_batch([3])
    assert await inbox.get_batch() == [1, 2, 3]
    await inbox.put_batch([4])
    assert await inbox.get() == 4
    await inbox.put_batch([5, 6])
    assert await inbox.get() == 5
    assert await inbox.get_batch() == [6]


async def test_drop_newest_keeps_the_first_messages(
    make_inbox: Callable[[int, Overflow], Inbox],
) -> None:
    inbox = make_inbox(3, "drop_newest")
    assert await inbox.put_batch([1, 2]) == 0
    assert await inbox.put_batch([3, 4, 5]) == 2
    assert inbox.dropped == 2
    assert await take(inbox, 3) == [1, 2, 3]
    assert await inbox.put_batch([6]) == 0
    assert await inbox.get() == 6


async def test_drop_oldest_keeps_the_newest_messages_and_frees_memory(
    make_inbox: Callable[[int, Overflow], Inbox],
) -> None:
    inbox = make_inbox(3, "drop_oldest")
    for i in range(100):
        await inbox.put_batch([i * 2, i * 2 + 1])
    assert inbox.dropped == 197
    assert inbox.queued == 3
    # The dropped messages are gone, not merely skipped later.
    held = len(inbox._current) - inbox._position + sum(len(b) for b in inbox._local)
    assert held <= 3
    assert await take(inbox, 3) == [197, 198, 199]


async def test_drop_oldest_while_a_consumer_waits_skips_exactly_the_excess(
    make_inbox: Callable[[int, Overflow], Inbox],
) -> None:
    inbox = make_inbox(2, "drop_oldest")
    got: list[object] = []

    async def consumer() -> None:
        got.extend(await take(inbox, 2))

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        await anyio.wait_all_tasks_blocked()
        assert await inbox.put_batch([1, 2, 3, 4, 5]) == 3
    assert got == [4, 5]


async def test_error_policy_raises_once_at_the_gap_then_continues(
    make_inbox: Callable[[int, Overflow], Inbox],
) -> None:
    inbox = make_inbox(2, "error")
    assert await inbox.put_batch([1, 2, 3, 4]) == 2
    assert await take(inbox, 2) == [1, 2]
    assert await inbox.put_batch([5]) == 0  # fits again: the consumer took 1 and 2
    with pytest.raises(WebSocketQueueFullError) as info:
        await inbox.get()
    assert (info.value.queue_size, info.value.dropped_count) == (2, 2)
    assert await inbox.get() == 5


async def test_block_waits_for_the_consumer_and_loses_nothing(
    make_inbox: Callable[[int, Overflow], Inbox],
) -> None:
    inbox = make_inbox(4, "block")
    produced = anyio.Event()

    async def producer() -> None:
        await inbox.put_batch(list(range(10)))
        produced.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(producer)
        await anyio.wait_all_tasks_blocked()
        assert inbox.blocked
        assert not produced.is_set()
        assert await take(inbox, 10) == list(range(10))
    assert not inbox.blocked
    assert inbox.dropped == 0


async def test_close_drains_then_ends(make_inbox: Callable[[int, Overflow], Inbox]) -> None:
    inbox = make_inbox(0, "block")
    await inbox.put_batch(["a"])
    inbox.close()
    assert await inbox.get() == "a"
    with pytest.raises(InboxClosed):
        await inbox.get()
    assert await inbox.put_batch(["late"]) == 0


async def test_close_with_error_raises_it_to_every_consumer(
    make_inbox: Callable[[int, Overflow], Inbox],
) -> None:
    inbox = make_inbox(0, "block")
    error = WebSocketReconnectError(3)
    results: list[BaseException] = []

    async def consumer() -> None:
        with pytest.raises(WebSocketReconnectError) as info:
            await inbox.get()
        results.append(info.value)

    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        tg.start_soon(consumer)
        await anyio.wait_all_tasks_blocked()
        inbox.close(error)
    assert results == [error, error]


async def test_closing_wakes_a_blocked_producer(
    make_inbox: Callable[[int, Overflow], Inbox],
) -> None:
    inbox = make_inbox(1, "block")
    async with anyio.create_task_group() as tg:
        tg.start_soon(inbox.put_batch, [1, 2, 3])
        await anyio.wait_all_tasks_blocked()
        inbox.close()


@pytest.mark.parametrize("getter", ["get", "get_batch"])
async def test_drop_oldest_drops_the_oldest_and_keeps_order_while_a_consumer_waits(
    make_inbox: Callable[[int, Overflow], Inbox], getter: str
) -> None:
    """A waiting consumer is woken, not handed a batch: everything queued stays where
    drop_oldest reaches it. (The stream once handed the first batch straight to the waiting
    consumer; drop_oldest then dropped newer messages and the consumer got [7, 8, 1, 2, 3].)"""
    inbox = make_inbox(5, "drop_oldest")
    got: list[object] = []

    async def consume() -> None:
        while len(got) < 5:
            if getter == "get":
                got.append(await inbox.get())
            else:
                got.extend(await inbox.get_batch())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()  # the consumer waits: the inbox is empty
            # Three batches before the consumer runs again; the third takes the queue three
            # over the limit, and the three oldest (1, 2 and 3) are dropped.
            assert inbox.put_nowait([1, 2, 3]) == 0
            assert inbox.put_nowait([4, 5]) == 0
            assert inbox.put_nowait([6, 7, 8]) == 3
    assert got == [4, 5, 6, 7, 8]
    assert inbox.dropped == 3
    assert inbox.queued == 0
