"""``managed-websocket URL --max-per-connection N --subscribe ...``: the pool from the command."""

from __future__ import annotations

import json
import subprocess
import sys

import anyio
import pytest

from ._venue import open_venue

COMMAND = [sys.executable, "-m", "managed_websocket"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the command picks its own event loop
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
async def test_many_subscribe_options_are_spread_over_connections(backend: str) -> None:
    channels = [f"ch{i}" for i in range(5)]
    subscribes = [arg for channel in channels for arg in ("--subscribe", channel)]
    async with open_venue(per_connection=2) as venue:
        with anyio.fail_after(30):
            done = await anyio.run_process(
                [*COMMAND, venue.url, "--max-per-connection", "2", "--count", "5"]
                + ["--backend", backend, *subscribes],
                check=False,
            )
    assert done.returncode == 0, done.stderr.decode()
    printed = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert sorted(m["channel"] for m in printed) == channels
    assert all(m["type"] == "subscribed" for m in printed)
    assert len(venue.server.clients) == 3
    assert venue.most_per_connection == 2
    assert venue.rejected == []
    assert "5 channels on 3 connection(s)" in done.stderr.decode()


def test_send_is_refused_with_max_per_connection() -> None:
    done = subprocess.run(
        [*COMMAND, "ws://127.0.0.1:1/", "--max-per-connection", "2", "--send", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--send cannot be used with --max-per-connection" in done.stderr
