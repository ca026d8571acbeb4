"""Turning a task group's ExceptionGroup back into the one exception the caller should see.

The manager's task groups are an implementation detail: callers get a plain exception, never a
group (the trio-websocket rules): the caller's own exception wins; otherwise the single real error
(cancellations aside); with several, the first, the others logged.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = ["enter_owner_group", "exit_owner_group", "unwrap_group"]

logger = logging.getLogger("managed_websocket")


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_leaves(exc))
        else:
            found.append(exc)
    return found


def unwrap_group(
    group: BaseExceptionGroup[BaseException], prefer: BaseException | None = None
) -> BaseException:
    cancelled = anyio.get_cancelled_exc_class()
    if prefer is not None and not isinstance(prefer, cancelled):
        return prefer
    leaves = _leaves(group)
    errors = [exc for exc in leaves if not isinstance(exc, cancelled)]
    if not errors:
        return leaves[0] if leaves else group
    for extra in errors[1:]:
        logger.error("! further error while stopping: %r", extra, exc_info=extra)
    return errors[0]


async def enter_owner_group(run: Callable[..., Coroutine[Any, Any, Any]]) -> anyio.abc.TaskGroup:
    """``async with`` for an object that runs as ``await tg.start(obj.run)``: a task group of
    its own, returned once ``run`` reported started; a startup failure comes out plain."""
    group = anyio.create_task_group()
    await group.__aenter__()
    try:
        await group.start(run)
    except BaseException as exc:
        group.cancel_scope.cancel()
        try:
            await group.__aexit__(type(exc), exc, exc.__traceback__)
        except BaseExceptionGroup as nested:
            raise unwrap_group(nested, prefer=exc) from None
        raise
    return group


async def exit_owner_group(
    group: anyio.abc.TaskGroup,
    shutdown: Callable[[], Awaitable[None]],
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> bool | None:
    """Leave what :func:`enter_owner_group` opened: shut down gracefully (shielded: the block
    may be leaving on a cancellation), then wait for the group; the block's own exception wins."""
    with anyio.CancelScope(shield=True):
        await shutdown()
    try:
        return await group.__aexit__(exc_type, exc, tb)
    except BaseExceptionGroup as nested:
        raise unwrap_group(nested, prefer=exc) from None
