"""Turning a task group's ExceptionGroup back into the one exception the caller should see.

The manager's task groups are an implementation detail: callers get a plain exception, never a
group (the trio-websocket rules): the caller's own exception wins; otherwise the single real error
(cancellations aside); with several, the first, the others logged.
"""

from __future__ import annotations

import logging
import sys

import anyio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = ["unwrap_group"]

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
