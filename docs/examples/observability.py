"""Watch the lifecycle: events while it runs, then the outage ledger and the counters."""

import anyio

from managed_websocket import (
    EventListener,
    LifecycleEvent,
    ManagedWebSocket,
    open_managed_websocket,
)


def handle(message: object) -> None:
    """Your code."""


async def record(events: EventListener, seen: list[LifecycleEvent]) -> None:
    async with events:
        async for event in events:  # ends when the manager is shut down
            print(event)
            seen.append(event)


async def main(url: str) -> tuple[list[LifecycleEvent], ManagedWebSocket]:
    seen: list[LifecycleEvent] = []
    async with (
        anyio.create_task_group() as tg,
        open_managed_websocket(url, sequence_of=lambda message: message.get("seq")) as ws,
    ):
        tg.start_soon(record, ws.events(), seen)  # listen before anything else happens
        await ws.subscribe("btcusdt@trade")
        async for message in ws:
            handle(message)
            if ws.stats.gaps_detected:  # this example stops at the first gap
                break
    for outage in ws.outages:
        print(outage.reason.name, outage.duration, outage.first_missing, outage.last_missing)
    return seen, ws
