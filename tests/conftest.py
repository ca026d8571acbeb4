from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

USER, PASSWORD = "alice", "s3cret-pw"

# Connections read wss_proxy/https_proxy/ws_proxy/http_proxy by default (proxy=True): a developer's
# proxy settings must not send the tests' 127.0.0.1 connections elsewhere. The proxy tests set
# them where they mean to.
for _name in ("ws_proxy", "wss_proxy", "http_proxy", "https_proxy", "all_proxy", "no_proxy"):
    os.environ.pop(_name, None)
    os.environ.pop(_name.upper(), None)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on both backends."""
    return str(request.param)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proxies:
    http: str
    http_auth: str  # needs USER:PASSWORD
    socks5: str
    socks5_auth: str
    socks4: str
    https: str  # HTTP CONNECT over TLS, its certificate from ``ca``
    ca: trustme.CA
    log: Path

    def with_credentials(self, url: str, user: str = USER, password: str = PASSWORD) -> str:
        scheme, rest = url.split("://")
        return f"{scheme}://{user}:{password}@{rest}"


@pytest.fixture(scope="session")
def proxies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxies]:
    """One pproxy process with a listener per kind, for the whole session. ``--auth 0``: pproxy
    would otherwise let an address in without credentials once it has authenticated."""
    folder = tmp_path_factory.mktemp("pproxy")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    ports = {name: free_port() for name in ("http", "http_auth", "socks5", "socks5_auth")}
    ports |= {"socks4": free_port(), "https": free_port()}
    listeners = [
        f"http://127.0.0.1:{ports['http']}",
        f"http://127.0.0.1:{ports['http_auth']}#{USER}:{PASSWORD}",
        f"socks5://127.0.0.1:{ports['socks5']}",
        f"socks5://127.0.0.1:{ports['socks5_auth']}#{USER}:{PASSWORD}",
        f"socks4://127.0.0.1:{ports['socks4']}",
        f"http+ssl://127.0.0.1:{ports['https']}",
    ]
    log = folder / "pproxy.log"
    command = [
        sys.executable,
        "-m",
        "pproxy",
        "-v",
        "--auth",
        "0",
        "--ssl",
        f"{folder}/cert.pem,{folder}/key.pem",
    ]
    for listener in listeners:
        command += ["-l", listener]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        for port in ports.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"pproxy did not start: {log.read_text()}")
                    time.sleep(0.05)
        yield Proxies(
            http=f"http://127.0.0.1:{ports['http']}",
            http_auth=f"http://127.0.0.1:{ports['http_auth']}",
            socks5=f"socks5://127.0.0.1:{ports['socks5']}",
            socks5_auth=f"socks5://127.0.0.1:{ports['socks5_auth']}",
            socks4=f"socks4://127.0.0.1:{ports['socks4']}",
            https=f"https://localhost:{ports['https']}",
            ca=ca,
            log=log,
        )
    finally:
        process.terminate()
        process.wait(10)
