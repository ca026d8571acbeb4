"""The ``managed-websocket`` command: watch a feed through the manager, or run the offline demo.

    managed-websocket URL [--subscribe CH ...] [--send TEXT ...] [--raw] [--count N] [-v]
                          [--backend asyncio|trio] [--ping-interval S] [--header K:V ...]
                          [--max-attempts N|forever] [--max-per-connection N]
                          [--format text|ndjson] [--live]
    managed-websocket demo [--seconds N] [--backend asyncio|trio]

Messages go to stdout, one per line (``--format ndjson``: one JSON object per message, with its
receive time); lifecycle events and the status line go to stderr. ``--live`` draws a panel on
stderr instead (``_live.py``, needs the ``[cli]`` extra); messages then go to stdout only when it
is not the terminal (a pipe or a file).
Exit codes: 0 done, 1 fatal connection error, 2 bad arguments or URL, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import signal
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, TextIO, cast

import anyio

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

from . import __version__, _demo
from ._exceptions import (
    WebSocketError,
    WebSocketHandshakeError,
    WebSocketInvalidURLError,
    describe,
)
from ._manager import ManagedWebSocket
from ._manager._groups import unwrap_group
from ._pool._cli import watch_pool
from ._url import parse_ws_url

__all__ = ["main"]

EXIT_FATAL = 1
EXIT_USAGE = 2

#: Dials for a first connection when --max-attempts is not given: a typo'd host or port should
#: fail in seconds, not after minutes of backoff. Later outages get DEFAULT_MAX_ATTEMPTS.
FIRST_CONNECT_ATTEMPTS = 3
DEFAULT_MAX_ATTEMPTS = 10
_UNSET = -1  # --max-attempts not given ('forever' is None)

#: The manager's log records the console shows its own way (matched by their format string).
_DIAL_FAILED = "! connecting to %s failed: %s"
_RECONNECT_IN = "= reconnecting to %s in %.2f s (attempt %d)"
_FATAL = "! %s failed: %s"
_CONNECTED = "= connected to %s"

#: Erase the terminal line the cursor is on (the status line), from its start.
_CLEAR_LINE = "\r\x1b[K"


def _watch_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="managed-websocket",
        description="Print every message of a WebSocket feed, reconnecting as needed. "
        "Run 'managed-websocket demo' for an offline demonstration.",
    )
    parser.add_argument("url", help="ws:// or wss:// URL")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--subscribe",
        action="append",
        default=[],
        metavar="CHANNEL",
        help='subscribe to CHANNEL ({"type": "subscribe", "channel": CHANNEL}), again after '
        "each reconnect; repeatable",
    )
    parser.add_argument(
        "--send",
        action="append",
        default=[],
        metavar="TEXT",
        help="send TEXT once, on the first connection: a JSON object or array as compact JSON, "
        "anything else as plain text; repeatable",
    )
    parser.add_argument("--raw", action="store_true", help="print messages as received")
    parser.add_argument(
        "--format",
        choices=["text", "ndjson"],
        default="text",
        help="text: one message per line (default); ndjson: one JSON object per line, "
        '{"received_at": UNIX_TIME, "message": ...} ("binary_hex" for a binary message), '
        "for jq or a message-queue CLI",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="draw a live panel on stderr (state, rates, latency, outages, last messages); "
        "needs pip install 'managed-websocket[cli]'",
    )
    parser.add_argument("--count", type=_positive_int, help="stop after N messages")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument(
        "--ping-interval",
        type=_non_negative_float,
        default=20.0,
        metavar="S",
        help="keepalive ping every S seconds (default 20; 0 turns keepalive off)",
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="K:V",
        type=_header,
        help="extra request header NAME:VALUE; repeatable",
    )
    parser.add_argument(
        "--max-attempts",
        type=_attempts,
        default=_UNSET,
        metavar="N",
        help=f"reconnect attempts before giving up (default {DEFAULT_MAX_ATTEMPTS}, and "
        f"{FIRST_CONNECT_ATTEMPTS} attempts in all for the first connection; "
        "'forever' never gives up)",
    )
    parser.add_argument(
        "--max-per-connection",
        type=_positive_int,
        metavar="N",
        help="spread the --subscribe channels over as many connections as needed, N per "
        "connection (a sharded pool; one new connection per second at most)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show the headers of refused upgrades and each resubscribe (close reasons "
        "are always shown, on the disconnect line)",
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


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be >= 0")
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
    except WebSocketInvalidURLError as exc:
        print(f"managed-websocket: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if watch_args.live and not _rich_installed():
        print(
            "managed-websocket: --live needs rich: pip install 'managed-websocket[cli]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    sends = [_outgoing(text) for text in watch_args.send]
    console = _Console(sys.stderr, verbose=watch_args.verbose)
    if watch_args.max_per_connection is not None:
        return _run_pool(watch_args, console)
    return _run(_watch, watch_args, sends, console, backend=watch_args.backend, console=console)


def _run_pool(args: argparse.Namespace, console: _Console) -> int:
    """--max-per-connection: the channels go to a sharded pool (``_pool/_cli.py``)."""
    if args.send:
        print("managed-websocket: --send cannot be used with --max-per-connection", file=sys.stderr)
        return EXIT_USAGE
    if args.max_attempts == _UNSET:
        args.max_attempts = DEFAULT_MAX_ATTEMPTS
    decode = None if args.raw else json_or_text
    return _run(
        watch_pool,
        args,
        console.write,
        decode,
        lambda message: _format(message, raw=args.raw),
        backend=args.backend,
        console=console,
    )


def _outgoing(text: str) -> Any:
    """A JSON object or array is sent as (compact) JSON; any other text as it is: ``hello``
    is a plain text frame, not an error (a scalar such as ``42`` is the same text either way)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict | list) else text


def _run(func: Any, *args: Any, backend: str | None = None, console: _Console | None = None) -> int:
    backend = backend if backend is not None else args[-1]
    if backend == "trio" and not _trio_installed():
        print(
            "managed-websocket: --backend trio needs trio: pip install 'managed-websocket[trio]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    console = console if console is not None else _Console(sys.stderr)
    _log_lifecycle(console)
    try:
        result: int = anyio.run(_until_interrupted, func, *args, backend=backend)
    except (WebSocketError, _GaveUp) as exc:
        # The one place the fatal error is shown (the console drops the manager's own record).
        console.clear_status()
        console.write(f"managed-websocket: {exc}")
        if isinstance(exc, WebSocketHandshakeError):
            console.show_headers(exc)
        return EXIT_FATAL
    return result


def _trio_installed() -> bool:
    return _importable("trio")


def _rich_installed() -> bool:
    return _importable("rich.live")


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
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


def _log_lifecycle(console: _Console) -> None:
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("managed_websocket")
    logger.addHandler(console)
    logger.setLevel(logging.INFO)


class _GaveUp(Exception):
    """The first connection never opened within its attempts (exit 1)."""


@dataclasses.dataclass
class _Attempts:
    """Which attempts the console counts: ``limit`` dials for a first connection (None: the
    manager's own limit), ``max_attempts`` reconnect attempts after that (None: forever)."""

    limit: int | None
    max_attempts: int | None
    give_up: Any = None  # called when the first connection used up its attempts


class _Console(logging.Handler):
    """stderr of the command: lifecycle records, one line per failed attempt, the status line.

    On a terminal the status line is erased before anything else is written (to stderr, or to
    stdout when that is the same terminal), so it never sticks to the front of another line.
    """

    def __init__(self, stream: TextIO, *, verbose: bool = False) -> None:
        super().__init__(logging.DEBUG)
        self.stream = stream
        self.verbose = verbose
        self.attempts = _Attempts(limit=None, max_attempts=None)
        self.gave_up = False
        self.connected = False
        self.failures = 0  # failed dials of the first connection
        self.last_failure: BaseException | None = None
        self.status_shown = False
        self.muted = False  # while the live panel owns the terminal

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._show(record)
        except Exception:  # noqa: BLE001  # pragma: no cover - a log line must not break the feed
            self.handleError(record)

    def _show(self, record: logging.LogRecord) -> None:
        if record.msg == _DIAL_FAILED:
            self._dial_failed(getattr(record, "error", None))
            return
        if record.msg == _RECONNECT_IN and self.last_failure is not None:
            # A failed dial and the pause after it: one line (after a disconnect: as logged).
            _url, delay, next_attempt = cast("tuple[object, float, int]", record.args)
            self._attempt_line(delay=delay, next_attempt=next_attempt)
            return
        if record.msg == _FATAL:
            return  # _run prints it, once, as the last line
        if record.levelno < logging.INFO:
            return  # state transitions and pongs stay out, also with -v
        if record.msg == _CONNECTED:
            self.connected, self.failures = True, 0
        self.write(self.format(record))

    def _dial_failed(self, error: object) -> None:
        self.last_failure = error if isinstance(error, BaseException) else None
        if self.connected:
            return
        self.failures += 1
        limit = self.attempts.limit
        if limit is not None and self.failures >= limit and self.attempts.give_up is not None:
            self.gave_up = True  # no "next in" line: there is no next attempt
            self.attempts.give_up()

    def _attempt_line(self, *, delay: float, next_attempt: int) -> None:
        if self.gave_up:
            return
        if self.connected:  # reconnect attempts after an outage: the manager's numbering
            failed, total = next_attempt - 1, self.attempts.max_attempts
        else:  # dials of the first connection, the first one included
            failed, total = self.failures, self._first_connection_dials()
        error = self.last_failure
        of = f"/{total}" if total is not None else ""
        line = (
            f"attempt {failed}{of} failed: {_reason(error)}; next in {_seconds(delay)} "
            "(Ctrl-C to stop)"
        )
        self.write(line)
        if isinstance(error, WebSocketHandshakeError):
            self.show_headers(error)
        self.last_failure = None

    def _first_connection_dials(self) -> int | None:
        if self.attempts.limit is not None:
            return self.attempts.limit
        most = self.attempts.max_attempts
        return None if most is None else most + 1  # the first dial and its reconnect attempts

    def show_headers(self, error: WebSocketHandshakeError) -> None:
        if self.verbose:
            for name, value in error.headers.items():
                self.write(f"  < {name}: {value}")

    def write(self, line: str) -> None:
        if self.muted:
            return
        self.clear_status()
        self.stream.write(line + "\n")
        self.stream.flush()

    def status(self, line: str) -> None:
        self.stream.write(_CLEAR_LINE + line)
        self.stream.flush()
        self.status_shown = True

    def clear_status(self) -> None:
        if self.status_shown:
            self.stream.write(_CLEAR_LINE)
            self.stream.flush()
            self.status_shown = False


def _seconds(delay: float) -> str:
    return f"{delay:.0f} s" if delay >= 1 else f"{delay:.1f} s"


def _reason(error: BaseException | None) -> str:
    """What went wrong, without the URL (the attempt line is about the one URL)."""
    return describe(error) if error is not None else "unknown error"


async def _watch(args: argparse.Namespace, sends: list[Any], console: _Console) -> int:
    explicit = args.max_attempts != _UNSET
    max_attempts = args.max_attempts if explicit else DEFAULT_MAX_ATTEMPTS
    ws = ManagedWebSocket(
        args.url,
        ping_interval=args.ping_interval or None,  # 0: keepalive off
        headers=args.header,
        decode=None if args.raw else json_or_text,
        max_reconnect_attempts=max_attempts,
        on_connect=_announce_resubscribe(console, args.subscribe) if args.verbose else None,
    )
    received = 0
    same_terminal = sys.stdout.isatty() and sys.stderr.isatty()
    # --live: the panel shows the last messages; stdout gets them only if it is not the terminal.
    print_messages = not args.live or not sys.stdout.isatty()
    recent: deque[str] = deque(maxlen=_live_recent())
    try:
        with anyio.CancelScope() as first_connection:
            console.attempts = _Attempts(
                limit=None if explicit else FIRST_CONNECT_ATTEMPTS,
                max_attempts=max_attempts,
                give_up=first_connection.cancel,
            )
            async with ws, anyio.create_task_group() as tg:
                if args.live:
                    tg.start_soon(_panel, ws, recent, console)
                elif sys.stderr.isatty():
                    tg.start_soon(_status_line, ws, console)
                await ws.subscribe(*args.subscribe)
                for message in sends:
                    await ws.send(message)
                async for message in ws:
                    text = _format(message, raw=args.raw)
                    if args.live:
                        recent.append(text)
                    if print_messages:
                        if same_terminal:
                            console.clear_status()
                        if args.format == "ndjson":
                            text = ndjson_line(message, time.time(), raw=args.raw)
                        print(text, flush=True)
                    received += 1
                    if args.count is not None and received >= args.count:
                        break
                tg.cancel_scope.cancel()
        if first_connection.cancelled_caught and not console.connected:
            raise _GaveUp(_gave_up_message(ws, console))
    finally:
        console.write(_demo.summary(ws.stats, {}))
    return 0


def _live_recent() -> int:
    from ._live import RECENT_MESSAGES

    return RECENT_MESSAGES


async def _panel(ws: ManagedWebSocket, recent: deque[str], console: _Console) -> None:
    """The live panel (``--live``), on stderr; the lifecycle lines stay quiet meanwhile."""
    from rich.console import Console

    from . import _live

    console.muted = True
    try:
        await _live.run_panel(ws, recent, Console(file=sys.stderr))
    finally:
        console.muted = False


def ndjson_line(message: Any, received_at: float, *, raw: bool = False) -> str:
    """One NDJSON line: ``{"received_at": ..., "message": ...}``; a JSON message is embedded as
    JSON (unless ``raw``), text as a string, binary as ``"binary_hex"``."""
    record: dict[str, Any] = {"received_at": round(received_at, 6)}
    if isinstance(message, bytes):
        record["binary_hex"] = message.hex()
    else:
        record["message"] = str(message) if raw else message
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def _gave_up_message(ws: ManagedWebSocket, console: _Console) -> str:
    error = console.last_failure
    reason = f": {_reason(error)}" if error is not None else ""
    attempts = console.failures
    return (
        f"could not connect to {ws.url} ({attempts} attempt{'s' if attempts != 1 else ''})"
        f"{reason}; check the URL, or retry longer with --max-attempts N|forever"
    )


def _announce_resubscribe(console: _Console, channels: list[str]) -> Any:
    """on_connect for -v: the subscriptions are replayed right after it on every reconnect."""
    connects = 0

    async def on_connect() -> None:
        nonlocal connects
        connects += 1
        if connects > 1 and channels:
            console.write(f"= resubscribing to {', '.join(channels)}")

    return on_connect


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


async def _status_line(ws: ManagedWebSocket, console: _Console) -> None:
    last = ws.stats.messages_received
    while True:
        await anyio.sleep(1.0)
        stats = ws.stats
        rate, last = stats.messages_received - last, stats.messages_received
        latency = f"{stats.latency * 1000:.1f} ms" if stats.latency is not None else "-"
        console.status(
            f"{ws.state.name.lower():>12} up {stats.uptime:6.0f} s  {rate:6d} msg/s  "
            f"reconnects {stats.connects - 1 if stats.connects else 0}  latency {latency}"
        )
