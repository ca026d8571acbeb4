"""Autobahn|Testsuite testee: drives our connection layer through the fuzzing server's cases.

    python tests/conformance/testee.py ws://127.0.0.1:PORT --agent NAME --backend asyncio|trio

Protocol (see scripts/conformance/README.md): read the case count, echo every message of each
case until the server closes, then ask the server to write its reports.
"""

from __future__ import annotations

import argparse
import contextlib

import anyio

from managed_websocket import WebSocketError
from managed_websocket._handshake import connect_websocket

MAX_MESSAGE_SIZE = 64 * 1024 * 1024  # section 9 sends up to 16 MiB


async def run_case(url: str) -> None:
    try:
        async with connect_websocket(url, max_message_size=MAX_MESSAGE_SIZE) as conn:
            while True:
                await conn.send(await conn.receive())
    except WebSocketError:
        pass  # the case ended: the server closed, or we failed the connection on its violation


async def main(base: str, agent: str) -> None:
    async with connect_websocket(f"{base}/getCaseCount") as conn:
        count = int(await conn.receive())
    for case in range(1, count + 1):
        await run_case(f"{base}/runCase?case={case}&agent={agent}")
    async with connect_websocket(f"{base}/updateReports?agent={agent}") as conn:
        with contextlib.suppress(WebSocketError):
            await conn.receive()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--agent", default="managed-websocket")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.url, args.agent, backend=args.backend)
