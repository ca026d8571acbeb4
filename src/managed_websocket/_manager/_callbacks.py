"""Calling user callbacks: sync or async, and never able to break the manager.

A callback that raises is logged (with its traceback) and counted in ``stats.callback_errors``;
the caller gets ``None`` back and carries on. Cancellation is not an ``Exception`` and passes.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from .._models import WebSocketStats

__all__ = ["CallbackRunner"]


class CallbackRunner:
    __slots__ = ("_logger", "_stats")

    def __init__(self, stats: WebSocketStats, logger: logging.Logger) -> None:
        self._stats = stats
        self._logger = logger

    async def call(self, name: str, callback: Callable[..., Any] | None, *args: Any) -> Any:
        """Call ``callback(*args)``, awaiting its result if it is awaitable."""
        if callback is None:
            return None
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                result = await result
        except Exception:
            self._stats.callback_errors += 1
            self._logger.exception("! %s callback raised; ignored", name)
            return None
        return result
