"""The manager: supervisor, session, inbox and state machine (see ``_managed.py``)."""

from __future__ import annotations

from ._managed import ManagedWebSocket, MessageIterator, open_managed_websocket

__all__ = ["ManagedWebSocket", "MessageIterator", "open_managed_websocket"]
