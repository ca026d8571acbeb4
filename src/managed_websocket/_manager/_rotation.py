"""Splicing two connections' streams at a make-before-break rotation, without duplicates.

From the moment a rotation starts — before the candidate connection is dialled, since the server
may send on it as soon as its handshake completes — the primary records the key
(``dedup_key(message)``) of everything it delivers. The switch waits until the primary has
delivered one of the messages the candidate staged (:meth:`Deduplicator.overlaps`): a primary
held back by a slow consumer may still hold older messages the candidate never got, and
switching earlier would lose them. At the switch, the candidate's messages are delivered in order, skipping each
one whose key the primary already delivered, until the first message the primary never saw:
from there on the streams no longer overlap (both deliver in the server's order), so filtering
stops and the recorded keys are dropped.

A message without a key (``dedup_key`` returned None, or raised) is always delivered: it is not
recorded, and it does not end the filtering.

Filtering may outlast the switch (the new primary's first batches can still be duplicates), and
the next rotation may start meanwhile: then the new primary keeps filtering *and* records again.

Without a ``dedup_key`` nothing is recorded: the switch happens at the candidate's first message
and the overlap is only reported.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["Deduplicator"]


class Deduplicator:
    """Records keys from its creation (a rotation started) until :meth:`switched`; then filters."""

    def __init__(self, key: Callable[[Any], Hashable]) -> None:
        self._key = key
        self._seen: set[Hashable] | None = set()  # recorded keys; None when not recording
        self._skip: set[Hashable] | None = None  # after a switch: keys to drop at the start

    @property
    def done(self) -> bool:
        """Neither recording nor filtering: the deduplicator can go."""
        return self._seen is None and self._skip is None

    def key_of(self, message: Any) -> Hashable:
        return self._key(message)

    def overlaps(self, keys: set[Hashable]) -> bool:
        """Whether the primary delivered any of ``keys`` since the rotation started."""
        return self._seen is not None and not self._seen.isdisjoint(keys)

    def restart(self) -> None:
        """A new rotation started: record (again) from now on; a filter still running goes on."""
        self._seen = set()

    def cancel(self) -> None:
        """The rotation was given up: stop recording; a filter still running goes on."""
        self._seen = None

    def switched(self) -> None:
        """The candidate is now the primary: start filtering what was recorded."""
        self._skip, self._seen = self._seen or set(), None

    def process(self, batch: list[Any]) -> tuple[list[Any], int]:
        """Record the keys (while a rotation runs), drop the leading duplicates (after a
        switch). Returns (kept, dropped)."""
        key = self._key
        keys = [key(message) for message in batch]
        if self._seen is not None:
            self._seen.update(value for value in keys if value is not None)
        skip = self._skip
        if skip is None:
            return batch, 0
        kept: list[Any] = []
        for index, value in enumerate(keys):
            if value is None:
                kept.append(batch[index])
            elif value not in skip:
                self._skip = None  # the first message the old primary never delivered
                kept.extend(batch[index:])
                break
        return kept, len(batch) - len(kept)
