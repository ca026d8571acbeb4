"""The managed-websocket command: exit codes, errors, and a clean Ctrl-C (in a subprocess)."""

from __future__ import annotations

import io
import logging
import os
import pty
import signal
import socket
import subprocess
import sys
import time

import anyio
import pytest

from managed_websocket import WebSocketConnectionRefusedError, cli
from managed_websocket.testing import open_test_server

COMMAND = [sys.executable, "-m", "managed_websocket"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_bad_url_is_a_one_line_usage_error_with_the_secret_masked() -> None:
    done = run("http://user:hunter2@example.com/?token=s3cret")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("managed-websocket: invalid WebSocket URL")
    assert "hunter2" not in done.stderr
    assert "s3cret" not in done.stderr


@pytest.mark.parametrize(
    "args",
    [["ws://h/", "--count", "0"], ["ws://h/", "--max-attempts", "-1"], ["ws://h/", "--bogus"]],
)
def test_bad_arguments_exit_with_2(args: list[str]) -> None:
    assert run(*args).returncode == 2


def test_help_explains_every_option() -> None:
    done = run("--help")
    assert done.returncode == 0
    for text in (
        "subscribe to CHANNEL",
        "anything else as plain text",
        "extra request header",
        "0 turns keepalive off",
        "'forever' never gives up",
        "close reasons",
    ):
        assert text in " ".join(done.stdout.split()), text


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_send_text_that_is_not_a_json_object_goes_as_plain_text() -> None:
    async with open_test_server() as server:
        with anyio.fail_after(30):
            process = await anyio.open_process(
                [*COMMAND, server.url, "--ping-interval", "0", "--count", "1"]
                + ["--send", "hello", "--send", "{not json", "--send", '{"op": "ping"}']
                + ["--send", "42"]
            )
            async with process:
                await server.wait_for_messages(4)
                await server.broadcast("bye")
                assert await process.wait() == 0
    assert server.clients[0].messages == ["hello", "{not json", '{"op":"ping"}', "42"]
    assert server.clients[0].pings_received == 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the command picks its own event loop
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
async def test_a_fatal_connection_error_exits_with_1(backend: str) -> None:
    async with open_test_server() as server:
        server.refuse_handshakes(403, count=None)
        with anyio.fail_after(30):
            done = await anyio.run_process(
                [*COMMAND, server.url, "--backend", backend], check=False
            )
    stderr = done.stderr.decode()
    assert done.returncode == 1
    assert "HTTP 403" in stderr.splitlines()[-1]
    assert stderr.count("HTTP 403") == 1  # said once, as the last line
    assert len(server.clients) == 1  # fatal: not retried


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_verbose_shows_the_headers_of_a_refused_upgrade() -> None:
    async with open_test_server() as server:
        server.refuse_handshakes(403, headers=[("X-Why", "banned region")], count=None)
        with anyio.fail_after(30):
            done = await anyio.run_process([*COMMAND, server.url, "-v"], check=False)
    assert done.returncode == 1
    assert "< x-why: banned region" in done.stderr.decode()


def test_a_first_connection_that_never_opens_gives_up_after_a_few_attempts() -> None:
    url = f"ws://127.0.0.1:{closed_port()}/?token=s3cret"
    started = time.monotonic()
    done = run(url)
    assert time.monotonic() - started < 20
    lines = done.stderr.splitlines()
    assert done.returncode == 1
    assert lines[0].startswith("attempt 1/3 failed: connection refused; next in ")
    assert lines[0].endswith(" s (Ctrl-C to stop)")
    assert lines[1].startswith("attempt 2/3 failed: ")
    assert len(lines) == 5  # two attempt lines, the two-line summary, the reason to give up
    assert lines[-1].startswith("managed-websocket: could not connect to ws://127.0.0.1:")
    assert "(3 attempts)" in lines[-1]
    assert "s3cret" not in done.stderr


def test_max_attempts_given_applies_to_the_first_connection_too() -> None:
    done = run(f"ws://127.0.0.1:{closed_port()}/", "--max-attempts", "1")
    assert done.returncode == 1
    assert done.stderr.splitlines()[0].startswith("attempt 1/2 failed: ")
    assert "gave up reconnecting after 1 attempt: connection refused (ws://" in done.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_verbose_shows_the_close_reason_and_the_resubscribe() -> None:
    async with open_test_server() as server:
        with anyio.fail_after(30):
            process = await anyio.open_process(
                # The test server echoes: each subscription comes back as a message.
                [*COMMAND, server.url, "-v", "--subscribe", "ticks", "--count", "2"]
            )
            async with process:
                await server.wait_for_messages(1)
                await server.close_clients(1012, "service restart")
                assert await process.wait() == 0
                assert process.stderr is not None
                stderr = b"".join([chunk async for chunk in process.stderr]).decode()
    assert "service restart" in stderr
    assert "= resubscribing to ticks" in stderr


def test_the_status_line_is_erased_before_a_message_line_on_a_terminal() -> None:
    script = (
        "import anyio\n"
        "from managed_websocket.testing import open_test_server\n"
        "async def main():\n"
        "    async with open_test_server() as server:\n"
        "        print(server.url, flush=True)\n"
        "        await server.wait_for_handshakes(1)\n"
        "        await anyio.sleep(1.5)\n"  # the status line is up by now
        "        await server.broadcast('tick-1')\n"
        "        await anyio.sleep(60)\n"
        "anyio.run(main)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
    ) as server:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        try:
            output = _run_on_a_terminal([*COMMAND, url, "--count", "1"])
        finally:
            server.kill()
    # The message line starts on a clean line: the status text was erased first.
    assert "\r\x1b[Ktick-1" in output, repr(output)
    assert output.count("\x1b[K") >= 2  # also before the summary


def _run_on_a_terminal(command: list[str]) -> str:
    primary, secondary = pty.openpty()
    with subprocess.Popen(command, stdout=secondary, stderr=secondary) as process:
        os.close(secondary)
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the command exited and the terminal closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        process.wait(timeout=30)
    os.close(primary)
    return b"".join(chunks).decode()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
async def test_ctrl_c_shuts_down_cleanly_with_a_summary(backend: str) -> None:
    async with open_test_server() as server:
        with anyio.fail_after(30):
            process = await anyio.open_process([*COMMAND, server.url, "--backend", backend])
            async with process:
                await server.wait_for_handshakes(1)
                await anyio.sleep(0.2)  # the CLI is now waiting for messages
                process.send_signal(signal.SIGINT)
                returncode = await process.wait()
                assert process.stderr is not None
                stderr = b"".join([chunk async for chunk in process.stderr]).decode()
            await server.clients[0].wait_closed()
    assert returncode == 130
    assert "connects 1, disconnects 1" in stderr
    assert "Traceback" not in stderr
    assert server.clients[0].close_code == 1000  # a graceful close, not a dropped socket


# As if installed without the [trio] extra: importing trio fails.
WITHOUT_TRIO = [
    sys.executable,
    "-c",
    (
        "import sys; sys.modules['trio'] = None; from managed_websocket.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    ),
]


@pytest.mark.parametrize("args", [["demo"], ["ws://127.0.0.1:1/"]], ids=["demo", "watch"])
def test_backend_trio_without_trio_names_the_extra_and_exits_with_2(args: list[str]) -> None:
    done = subprocess.run(
        [*WITHOUT_TRIO, *args, "--backend", "trio"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "managed-websocket: --backend trio needs trio: pip install 'managed-websocket[trio]'"
    ]
    assert "Traceback" not in done.stderr


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("managed_websocket", logging.INFO, __file__, 0, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_a_reconnect_after_a_disconnect_is_shown_as_logged() -> None:
    stream = io.StringIO()
    console = cli._Console(stream)
    console.emit(_record(cli._CONNECTED, "ws://h/"))
    console.emit(_record(cli._RECONNECT_IN, "ws://h/", 0.05, 1))
    assert stream.getvalue().splitlines()[-1] == "= reconnecting to ws://h/ in 0.05 s (attempt 1)"


def test_a_failed_reconnect_after_an_outage_is_one_line_numbered_like_the_manager() -> None:
    stream = io.StringIO()
    console = cli._Console(stream)
    console.attempts = cli._Attempts(limit=None, max_attempts=10)
    console.emit(_record(cli._CONNECTED, "ws://h/"))
    error = WebSocketConnectionRefusedError("connection refused", url="ws://h/")
    console.emit(_record(cli._DIAL_FAILED, "ws://h/", "connection refused", error=error))
    console.emit(_record(cli._RECONNECT_IN, "ws://h/", 0.5, 2))
    assert stream.getvalue().splitlines()[1:] == [
        "attempt 1/10 failed: connection refused; next in 0.5 s (Ctrl-C to stop)"
    ]


def test_ping_interval_0_turns_keepalive_off(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def recording_manager(url: str, **options: object) -> None:
        seen.update(options)
        raise WebSocketConnectionRefusedError("stop here", url=url)

    monkeypatch.setattr(cli, "ManagedWebSocket", recording_manager)
    logger = logging.getLogger("managed_websocket")
    handlers, level = list(logger.handlers), logger.level
    try:
        assert cli.main(["ws://127.0.0.1:1/", "--ping-interval", "0"]) == cli.EXIT_FATAL
    finally:  # main() sets up the command's logging: undo it for the other tests
        logger.handlers[:], logger.level = handlers, level
    assert seen["ping_interval"] is None
