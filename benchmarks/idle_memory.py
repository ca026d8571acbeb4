"""Idle memory per managed connection: how much one process's RSS grows per open connection.

``python -m benchmarks.idle_memory --backend asyncio --count 1000 --url ws://HOST:PORT/idle``

Opens one warm-up connection (so imports and first-use caches are not counted), reads the RSS,
opens ``count`` more ``ManagedWebSocket`` connections with default options (``COHORT`` at a time)
to a server that never sends, waits for them to settle, reads the RSS again and prints one JSON
line. RSS is user-space memory only: kernel socket buffers are not in it. The soft
RLIMIT_NOFILE is raised first; if the hard limit is too low the result says so.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
from time import perf_counter
from typing import Any

import anyio
import anyio.abc

from managed_websocket import ManagedWebSocket

COHORT = 100  # connections opened concurrently
FD_MARGIN = 256  # descriptors beyond one per connection (stdio, epoll, the warm-up connection)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def ensure_fd_limit(count: int) -> str | None:
    """Raise the soft RLIMIT_NOFILE for ``count`` sockets; return why not, if impossible."""
    needed = count + FD_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY and hard < needed:
        return f"RLIMIT_NOFILE hard limit is {hard}, {needed} descriptors needed"
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    except (ValueError, OSError) as exc:
        return f"cannot raise RLIMIT_NOFILE to {needed}: {exc}"
    return None


async def _open_cohort(group: anyio.abc.TaskGroup, url: str, size: int) -> None:
    async with anyio.create_task_group() as cohort:
        for _ in range(size):
            cohort.start_soon(group.start, ManagedWebSocket(url).run)


async def hold(url: str, count: int) -> dict[str, Any]:
    async with anyio.create_task_group() as group:
        await group.start(ManagedWebSocket(url).run)  # warm-up
        gc.collect()
        before = rss_bytes()
        started = perf_counter()
        for first in range(0, count, COHORT):
            await _open_cohort(group, url, min(COHORT, count - first))
        opened_in = perf_counter() - started
        await anyio.sleep(0.5)  # let every session reach its steady state
        gc.collect()
        after = rss_bytes()
        cancelled_at = perf_counter()
        group.cancel_scope.cancel()  # every manager aborts its socket
    return {
        "count": count,
        "rss_before": before,
        "rss_after": after,
        "per_connection": (after - before) / count,
        "open_seconds": opened_in,
        "cancel_seconds": perf_counter() - cancelled_at,
        "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("asyncio", "trio"), required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--url", required=True)
    args = parser.parse_args()
    problem = ensure_fd_limit(args.count)
    if problem is not None:
        result: dict[str, Any] = {"count": args.count, "error": problem}
    elif args.backend == "trio":
        import trio

        result = trio.run(hold, args.url, args.count)
    else:
        result = asyncio.run(hold(args.url, args.count))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
