"""The ``managed-websocket`` command: watch a feed through the manager, or run the offline demo.

    managed-websocket URL [--subscribe CH ...] [--send JSON ...] [--raw] [--count N]
                          [--backend asyncio|trio] [--ping-interval S] [--header K:V ...]
    managed-websocket demo [--seconds N] [--backend asyncio|trio]

Messages go to stdout, one per line; lifecycle events and the status line go to stderr.
Exit codes: 0 done, 1 fatal connection error, 2 bad arguments or URL, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import anyio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from . import _demo
from ._exceptions import WebSocketError, WebSocketInvalidURLError
from ._manager import ManagedWebSocket
from ._manager._groups import unwrap_group
from ._url import parse_ws_url

__all__ = ["main"]

EXIT_FATAL = 1
EXIT_USAGE = 2


def _watch_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="managed-websocket",
        description="Print every message of a WebSocket feed, reconnecting as needed. "
        "Run 'managed-websocket demo' for an offline demonstration.",
    )
    parser.add_argument("url", help="ws:// or wss:// URL")
    parser.add_argument("--subscribe", action="append", default=[], metavar="CHANNEL")
    parser.add_argument("--send", action="append", default=[], metavar="JSON")
    parser.add_argument("--raw", action="store_true", help="print messages as received")
    parser.add_argument("--count", type=_positive_int, help="stop after N messages")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--ping-interval", type=_positive_float, default=20.0, metavar="S")
    parser.add_argument("--header", action="append", default=[], metavar="K:V", type=_header)
    parser.add_argument(
        "--max-attempts",
        type=_attempts,
        default=10,
        metavar="N",
        help="reconnect attempts before giving up (default 10; 'forever' never gives up)",
    )
    return parser


def _demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="managed-websocket demo",
        description="Run the manager against an embedded, fault-injecting tick server (offline).",
    )
    parser.add_argument("--seconds", type=_positive_float, default=15.0)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _attempts(text: str) -> int | None:
    if text == "forever":
        return None
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0 or 'forever'")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError("expected NAME:VALUE")
    return name.strip(), value.strip()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``managed-websocket`` command; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["demo"]:
        demo_args = _demo_parser().parse_args(args[1:])
        return _run(_demo.run_demo, demo_args.seconds, demo_args.backend)
    watch_args = _watch_parser().parse_args(args)
    try:
        parse_ws_url(watch_args.url)
        sends = [json.loads(text) for text in watch_args.send]
    except WebSocketInvalidURLError as exc:
        print(f"managed-websocket: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except json.JSONDecodeError as exc:
        print(f"managed-websocket: --send is not valid JSON: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _run(_watch, watch_args, sends, backend=watch_args.backend)


def _run(func: Any, *args: Any, backend: str | None = None) -> int:
    backend = backend if backend is not None else args[-1]
    if backend == "trio" and not _trio_installed():
        print(
            "managed-websocket: --backend trio needs trio: pip install 'managed-websocket[trio]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    _log_lifecycle(sys.stderr)
    try:
        result: int = anyio.run(_until_interrupted, func, *args, backend=backend)
    except WebSocketError as exc:
        print(f"managed-websocket: {exc}", file=sys.stderr)
        return EXIT_FATAL
    return result


def _trio_installed() -> bool:
    try:
        importlib.import_module("trio")
    except ImportError:
        return False
    return True


async def _until_interrupted(func: Any, *args: Any) -> int:
    """Run ``func``; Ctrl-C or SIGTERM cancels it cleanly (its shutdown path runs)."""
    try:
        return await _run_cancellable(func, *args)
    except BaseExceptionGroup as group:
        raise unwrap_group(group) from None


async def _run_cancellable(func: Any, *args: Any) -> int:
    interrupted = False
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            nonlocal interrupted
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    interrupted = True
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(watch_signals)
        code: int = await func(*args)
        tg.cancel_scope.cancel()
    return 130 if interrupted else code


def _log_lifecycle(stream: TextIO) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("managed_websocket")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


async def _watch(args: argparse.Namespace, sends: list[Any]) -> int:
    ws = ManagedWebSocket(
        args.url,
        ping_interval=args.ping_interval,
        headers=args.header,
        decode=None if args.raw else json_or_text,
        max_reconnect_attempts=args.max_attempts,
    )
    received = 0
    try:
        async with ws, anyio.create_task_group() as tg:
            if sys.stderr.isatty():
                tg.start_soon(_status_line, ws, sys.stderr)
            await ws.subscribe(*args.subscribe)
            for message in sends:
                await ws.send(message)
            async for message in ws:
                print(_format(message, raw=args.raw), flush=True)
                received += 1
                if args.count is not None and received >= args.count:
                    break
            tg.cancel_scope.cancel()
    finally:
        print(_demo.summary(ws.stats, {}), file=sys.stderr)
    return 0


def json_or_text(message: str | bytes) -> Any:
    """Decode JSON text of any kind (for compact re-serialisation); keep other text as is."""
    if isinstance(message, str):
        try:
            return json.loads(message)
        except ValueError:
            return message
    return message


def _format(message: Any, *, raw: bool) -> str:
    if isinstance(message, bytes):
        return message.hex()
    if raw or isinstance(message, str):
        return str(message)
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


async def _status_line(ws: ManagedWebSocket, stream: TextIO) -> None:
    last = ws.stats.messages_received
    while True:
        await anyio.sleep(1.0)
        stats = ws.stats
        rate, last = stats.messages_received - last, stats.messages_received
        latency = f"{stats.latency * 1000:.1f} ms" if stats.latency is not None else "-"
        stream.write(
            f"\r{ws.state.name.lower():>12} up {stats.uptime:6.0f} s  {rate:6d} msg/s  "
            f"reconnects {stats.connects - 1 if stats.connects else 0}  latency {latency}  "
        )
        stream.flush()
