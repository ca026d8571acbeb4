"""nginx as a real reverse proxy in front of the test server, with ``proxy_read_timeout 1s``.

nginx cuts an upgraded (WebSocket) connection when nothing crossed it for ``proxy_read_timeout``.
Without keepalive an idle feed is therefore cut after about a second, and the manager must notice
and reconnect; with a keepalive ping more often than that, the connection must survive.

The ``nginx`` fixture runs Debian's nginx privately: its own config, pid file and error log in a
temporary directory, ``daemon off`` under ``anyio.open_process``, stopped in the teardown. If
nginx is not installed, the fixture installs ``nginx-light`` with apt-get when running as root,
and otherwise skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
import pytest

from managed_websocket import DisconnectReason
from managed_websocket.testing import WebSocketTestServer, open_test_server

from ._support import managed_feed, now

pytestmark = pytest.mark.anyio

#: nginx's idle cut-off for upgraded connections, as configured below.
READ_TIMEOUT = 1.0

#: For the start (and stop) of nginx, and for each test as a whole.
WAIT = 20.0

_CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{
    worker_connections 64;
}}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout {read_timeout}s;
        }}
    }}
}}
"""


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _find_nginx() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    """The path of nginx, installed with apt-get (``nginx-light``) if need be and possible."""
    found = _find_nginx()
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("nginx is not installed, and installing it needs root")
    if shutil.which("apt-get") is None:
        pytest.skip("nginx is not installed, and there is no apt-get to install it")
    result = _apt_get("install", "-y", "--no-install-recommends", "nginx-light")
    if result.returncode != 0:  # perhaps no package lists yet
        update = _apt_get("update")
        if update.returncode != 0:
            pytest.skip(f"nginx not installed; apt-get update failed: {update.stderr[-500:]}")
        result = _apt_get("install", "-y", "--no-install-recommends", "nginx-light")
    found = _find_nginx()
    if result.returncode != 0 or found is None:
        pytest.skip(
            f"nginx not installed; apt-get install nginx-light failed: {result.stderr[-500:]}"
        )
    return found


@dataclass
class Nginx:
    server: WebSocketTestServer
    port: int
    error_log: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _accepts(port: int) -> bool:
    try:
        stream = await anyio.connect_tcp("127.0.0.1", port)
    except OSError:
        return False
    await stream.aclose()
    return True


@pytest.fixture
async def nginx(nginx_binary: str, tmp_path: Path) -> AsyncIterator[Nginx]:
    """The test server, and a private nginx in front of it (WebSocket upgrades proxied)."""
    async with open_test_server(echo=False) as server:
        port = _free_port()
        config = tmp_path / "nginx.conf"
        config.write_text(
            _CONFIG.format(
                tmp=tmp_path, port=port, upstream=server.port, read_timeout=int(READ_TIMEOUT)
            )
        )
        error_log = tmp_path / "error.log"
        command = [nginx_binary, "-p", str(tmp_path), "-e", str(error_log), "-c", str(config)]
        process = await anyio.open_process(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            with anyio.fail_after(WAIT):
                while not await _accepts(port):
                    if process.returncode is not None:
                        stderr = b""
                        if process.stderr is not None:
                            stderr = await process.stderr.receive()
                        pytest.fail(f"nginx exited at start: {stderr.decode(errors='replace')}")
                    await anyio.sleep(0.02)
            yield Nginx(server, port, error_log)
        finally:
            with anyio.CancelScope(shield=True):
                process.terminate()  # SIGTERM: fast shutdown
                with anyio.move_on_after(WAIT):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                await process.aclose()


async def test_an_idle_feed_is_cut_by_nginx_and_the_manager_reconnects(
    nginx: Nginx, anyio_backend: str
) -> None:
    with anyio.fail_after(WAIT):
        async with managed_feed(
            anyio_backend, server=nginx.server, url=nginx.url, ping_interval=None
        ) as run:
            idle_since = now()
            await run.disconnected.wait()
            idle = run.disconnects[0][0] - idle_since
            # nginx closes both TCP connections, without a close frame: EOF to us.
            assert run.reasons == [DisconnectReason.NETWORK_ERROR]
            last = run.manager.last_disconnect
            assert last is not None
            assert last.code == 1006
            assert READ_TIMEOUT - 0.1 <= idle <= READ_TIMEOUT + 3
            assert nginx.server.clients[0].ended_by == "client_eof"  # nginx dropped it, too
            await run.recover(1)  # reconnected through nginx; the feed flows again
        assert "timed out" in nginx.error_log.read_text()


async def test_keepalive_keeps_the_connection_through_nginx(
    nginx: Nginx, anyio_backend: str
) -> None:
    with anyio.fail_after(WAIT):
        async with managed_feed(
            anyio_backend, server=nginx.server, url=nginx.url, ping_interval=0.3, ping_timeout=2
        ) as run:
            await anyio.sleep(3 * READ_TIMEOUT)  # idle but for the pings
            assert run.reasons == []
            assert run.manager.stats.disconnects == 0
            assert len(nginx.server.clients) == 1
            assert nginx.server.clients[0].pings_received >= 5
            await run.recover(0)
