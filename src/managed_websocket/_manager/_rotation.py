"""Splicing two connections' streams at a make-before-break rotation, without duplicates.

From the moment a rotation opens a candidate connection, the primary records the key
(``dedup_key(message)``) of everything it delivers. At the switch, the candidate's messages are
delivered in order, skipping each one whose key the primary already delivered, until the first
message the primary never saw: from there on the streams no longer overlap (both deliver in the
server's order), so filtering stops and the recorded keys are dropped.

Without a ``dedup_key`` nothing is recorded: the switch happens at the candidate's first message
and the overlap is only reported.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["Deduplicator"]


class Deduplicator:
    def __init__(self, key: Callable[[Any], Hashable]) -> None:
        self._key = key
        self._seen: set[Hashable] = set()
        self._switched = False
        self.done = False

    def switched(self) -> None:
        """The candidate is now the primary: start filtering instead of recording."""
        self._switched = True

    def process(self, batch: list[Any]) -> tuple[list[Any], int]:
        """Before the switch: record the keys. After: drop the duplicates. Returns (kept, dropped)."""
        key = self._key
        if not self._switched:
            self._seen.update(key(message) for message in batch)
            return batch, 0
        for index, message in enumerate(batch):
            if key(message) not in self._seen:
                self._seen.clear()
                self.done = True
                return batch[index:], index
        return [], len(batch)
