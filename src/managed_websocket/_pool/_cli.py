"""``managed-websocket URL --max-per-connection N --subscribe ...``: watch a feed through a pool.

The command's usual output: one message per line on stdout; on stderr the manager's lifecycle
lines (each shard logs its own) and, at the end, the summary of every shard's counters added up.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from .. import _demo
from ._pool import ManagedWebSocketPool

__all__ = ["watch_pool"]


async def watch_pool(
    args: argparse.Namespace,
    write: Callable[[str], None],
    decode: Callable[[str | bytes], Any] | None,
    format_message: Callable[[Any], str],
) -> int:
    """Subscribe ``args.subscribe`` over shards of ``args.max_per_connection`` channels each and
    print every message until ``args.count`` (or forever)."""
    pool = ManagedWebSocketPool(
        args.url,
        max_subscriptions_per_connection=args.max_per_connection,
        ping_interval=args.ping_interval or None,  # 0: keepalive off
        headers=args.header,
        decode=decode,
        max_reconnect_attempts=args.max_attempts,
    )
    received = 0
    try:
        async with pool:
            await pool.subscribe(*args.subscribe)
            shards = len(pool.subscriptions)
            write(f"= {len(args.subscribe)} channels on {shards} connection(s)")
            async for message in pool:
                print(format_message(message), file=sys.stdout, flush=True)
                received += 1
                if args.count is not None and received >= args.count:
                    break
    finally:
        write(_demo.summary(pool.stats.total, {}))
    return 0
