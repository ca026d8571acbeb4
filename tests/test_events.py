"""Unit tests, no sockets: lifecycle event values, EventHub fan-out and EventListener buffers.

The manager-level behaviour (which events a real connect/drop/reconnect publishes) is in
``tests/manager/test_events_and_ledger.py``.
"""

from __future__ import annotations

import dataclasses
import gc

import anyio
import anyio.lowlevel
import pytest

from managed_websocket import (
    Connected,
    Connecting,
    DisconnectDeferred,
    Disconnected,
    DisconnectReason,
    GapDetected,
    LifecycleEvent,
    MessagesDropped,
    ReconnectScheduled,
    RotationCompleted,
    RotationFailed,
    RotationStarted,
)
from managed_websocket._events import EventHub

pytestmark = pytest.mark.anyio

WAIT = 5.0


def numbered(n: int) -> list[LifecycleEvent]:
    return [Connecting(attempt=i, delay=0.0) for i in range(n)]


async def drain(listener: object) -> list[LifecycleEvent]:
    """Everything a listener yields until its iteration ends."""
    with anyio.fail_after(WAIT):
        return [event async for event in listener]  # type: ignore[attr-defined]


# -- the values -----------------------------------------------------------------------------------


ALL_EVENTS: list[LifecycleEvent] = [
    Connecting(attempt=0, delay=0.0),
    Connected(subprotocol=None, latency=None),
    Disconnected(reason=DisconnectReason.NETWORK_ERROR, code=1006, close_reason=""),
    ReconnectScheduled(delay=0.5, attempt=1),
    RotationStarted(reason=DisconnectReason.SCHEDULED),
    RotationCompleted(overlap_messages=3, duplicates_dropped=2),
    RotationFailed(error="x"),
    MessagesDropped(count=4),
    DisconnectDeferred(reason=DisconnectReason.SCHEDULED, waited=0.1, forced=False),
    GapDetected(first_missing=3, last_missing=5),
]


@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: type(e).__name__)
async def test_events_are_frozen_typed_values_with_a_timestamp(event: LifecycleEvent) -> None:
    assert isinstance(event, LifecycleEvent)
    assert event.at > 1_000_000_000  # wall clock
    field = dataclasses.fields(event)[-1].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, field, None)
    assert event == dataclasses.replace(event)  # plain values: equal by content


async def test_events_take_keywords_only() -> None:
    with pytest.raises(TypeError):
        GapDetected(3, 5)  # type: ignore[misc]


async def test_disconnected_is_not_in_a_critical_section_unless_said() -> None:
    event = Disconnected(reason=DisconnectReason.SERVER_CLOSED, code=1000, close_reason="")
    assert event.in_critical_section is False


# -- the hub --------------------------------------------------------------------------------------


async def test_every_listener_gets_every_event_in_order() -> None:
    hub = EventHub()
    first, second = hub.listen(), hub.listen()
    events = numbered(5)
    for event in events:
        hub.publish(event)
    hub.close()
    assert await drain(first) == events
    assert await drain(second) == events
    assert first.dropped == second.dropped == 0


async def test_a_listener_sees_only_what_is_published_after_it_listens() -> None:
    hub = EventHub()
    early = hub.listen()
    hub.publish(Connecting(attempt=0, delay=0.0))
    late = hub.listen()
    hub.publish(Connecting(attempt=1, delay=0.0))
    hub.close()
    assert [e.attempt for e in await drain(early)] == [0, 1]  # type: ignore[attr-defined]
    assert [e.attempt for e in await drain(late)] == [1]  # type: ignore[attr-defined]


async def test_a_full_listener_drops_and_counts_without_blocking_the_others() -> None:
    hub = EventHub()
    slow, fast = hub.listen(buffer=2), hub.listen(buffer=0)  # 0 = unbounded
    events = numbered(10)
    for event in events:
        hub.publish(event)  # never awaits, so it cannot block
    assert slow.dropped == 8
    assert fast.dropped == 0
    hub.close()
    assert await drain(slow) == events[:2]  # it keeps the oldest it had room for
    assert await drain(fast) == events


async def test_dropping_is_per_listener_and_resumes_once_there_is_room() -> None:
    hub = EventHub()
    listener = hub.listen(buffer=1)
    a, b, c = numbered(3)
    hub.publish(a)
    hub.publish(b)  # dropped
    with anyio.fail_after(WAIT):
        assert await listener.__anext__() is a
    hub.publish(c)  # there is room again
    hub.close()
    assert await drain(listener) == [c]
    assert listener.dropped == 1


async def test_close_ends_iteration_after_what_is_buffered() -> None:
    hub = EventHub()
    listener = hub.listen()
    received: list[LifecycleEvent] = []

    async def consume() -> None:
        async for event in listener:
            received.append(event)  # noqa: PERF401 - read while it runs

    events = numbered(3)
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            for event in events:
                hub.publish(event)
            hub.close()  # the consumer's loop ends by itself: the task group can exit
    assert received == events


async def test_listening_after_close_ends_at_once_and_publish_is_a_no_op() -> None:
    hub = EventHub()
    hub.close()
    hub.publish(Connecting(attempt=0, delay=0.0))
    listener = hub.listen()
    assert await drain(listener) == []
    assert listener.dropped == 0


async def test_aclose_unregisters_the_listener_and_ends_its_iteration() -> None:
    hub = EventHub()
    gone, staying = hub.listen(buffer=1), hub.listen(buffer=1)
    await gone.aclose()
    await gone.aclose()  # idempotent
    assert await drain(gone) == []
    for event in numbered(3):
        hub.publish(event)  # nothing is offered (or counted) for the closed one
    assert gone.dropped == 0
    assert staying.dropped == 2
    assert hub._listeners == [staying]
    hub.close()


async def test_async_with_closes_the_listener() -> None:
    hub = EventHub()
    async with hub.listen() as listener:
        hub.publish(Connecting(attempt=0, delay=0.0))
        with anyio.fail_after(WAIT):
            assert isinstance(await listener.__anext__(), Connecting)
    assert hub._listeners == []
    assert await drain(listener) == []


async def test_a_forgotten_listener_is_collected_without_a_resource_warning() -> None:
    """pytest turns warnings into errors: a listener nobody closed closes its streams when it is
    collected (anyio warns about memory streams left open)."""
    hub = EventHub()
    listener = hub.listen()
    hub.publish(Connecting(attempt=0, delay=0.0))
    hub.close()  # the hub lets go of it; nobody calls aclose()
    del listener
    gc.collect()
    await anyio.lowlevel.checkpoint()
