"""Staggered rotations: when each shard should rotate so that no two rotate close together. Pure.

Each connected shard is *due* once its connection reaches ``max_connection_age``. With ``n``
shards the age is split into ``n`` windows (``gap = max_connection_age / n``) and rotations are
planned one window apart: shards due close together are pulled earlier (never later than due,
when possible), so the first cycle spreads them out and later cycles keep the spacing. A rotation
never starts less than ``gap`` after the previous one started.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["plan_rotations"]


def plan_rotations(
    due: Mapping[int, float], *, gap: float, now: float, last_started: float | None = None
) -> list[tuple[float, int]]:
    """(time, shard) for every shard in ``due``, earliest first, each ``gap`` after the one
    before, the first at ``now`` or later and ``gap`` after ``last_started`` or later."""
    order = sorted(due, key=lambda shard: (due[shard], shard))
    pulled: dict[int, float] = {}
    following = math.inf
    for shard in reversed(order):  # latest first: pull earlier ones back
        at = min(due[shard], following - gap)
        pulled[shard] = at
        following = at
    earliest = now if last_started is None else max(now, last_started + gap)
    plan: list[tuple[float, int]] = []
    for shard in order:
        at = max(pulled[shard], earliest)
        plan.append((at, shard))
        earliest = at + gap
    return plan
