"""The managed-websocket command: exit codes, errors, and a clean Ctrl-C (in a subprocess)."""

from __future__ import annotations

import signal
import subprocess
import sys

import anyio
import pytest

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


def test_bad_send_json_exits_with_2() -> None:
    done = run("ws://127.0.0.1:1/", "--send", "{not json")
    assert done.returncode == 2
    assert "--send is not valid JSON" in done.stderr


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
    assert len(server.clients) == 1  # fatal: not retried


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
