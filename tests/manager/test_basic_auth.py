"""``user:pass@`` in the URL is sent as HTTP Basic ``Authorization`` (as websockets does) and
masked everywhere; an explicit Authorization header wins. Against the real testing server, which
records the upgrade request's headers, on both backends.
"""

from __future__ import annotations

import base64
import logging

import anyio
import pytest

from managed_websocket import (
    ConnectFailed,
    LifecycleEvent,
    WebSocketHandshakeError,
    open_managed_websocket,
    open_websocket_connection,
)
from managed_websocket.testing import WebSocketTestServer, open_test_server

from ._harness import FAST, WAIT

pytestmark = pytest.mark.anyio

PASSWORD = "hunter2-s3cret"


def with_userinfo(server: WebSocketTestServer, userinfo: str, path: str = "/feed") -> str:
    return server.url.replace("ws://", f"ws://{userinfo}@", 1) + path


def authorization(server: WebSocketTestServer) -> list[str]:
    (client,) = server.clients
    return [value for name, value in client.request_headers if name == "authorization"]


def decoded(value: str) -> str:
    scheme, _, token = value.partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(token).decode()


async def test_the_url_credentials_reach_the_server_as_basic_auth() -> None:
    async with open_test_server(echo=False) as server:
        url = with_userinfo(server, f"alice:{PASSWORD.replace('-', '%2D')}")
        with anyio.fail_after(WAIT):
            async with open_managed_websocket(url, **FAST) as ws:
                assert ws.is_connected
                assert PASSWORD not in ws.url
                assert PASSWORD not in repr(ws)
        (value,) = authorization(server)
        assert decoded(value) == f"alice:{PASSWORD}"
        assert server.clients[0].path == "/feed"  # the userinfo is not in the request line


async def test_a_single_connection_sends_it_too() -> None:
    async with open_test_server(echo=False) as server:
        with anyio.fail_after(WAIT):
            conn = await open_websocket_connection(with_userinfo(server, "bob:pw"))
            await conn.aclose()
        (value,) = authorization(server)
        assert decoded(value) == "bob:pw"


async def test_an_explicit_authorization_header_wins() -> None:
    async with open_test_server(echo=False) as server:
        url = with_userinfo(server, f"alice:{PASSWORD}")
        headers = {"authorization": "Bearer t0ken"}
        with anyio.fail_after(WAIT):
            async with open_managed_websocket(url, **FAST, headers=headers):
                pass
        assert authorization(server) == ["Bearer t0ken"]  # once: the URL's is not added


async def test_without_userinfo_no_authorization_is_sent() -> None:
    async with open_test_server(echo=False) as server:
        with anyio.fail_after(WAIT):
            async with open_managed_websocket(server.url + "/feed", **FAST):
                pass
        assert authorization(server) == []


async def test_a_refused_login_never_shows_the_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="managed_websocket")
    events: list[LifecycleEvent] = []
    async with open_test_server(echo=False) as server:
        server.refuse_handshakes(401, body=b"bad credentials", count=None)
        url = with_userinfo(server, f"alice:{PASSWORD}")
        ws = open_managed_websocket(url, **FAST, on_event=events.append)
        with anyio.fail_after(WAIT), pytest.raises(WebSocketHandshakeError) as info:
            async with ws:
                pass
        (value,) = authorization(server)
        assert decoded(value) == f"alice:{PASSWORD}"  # it was sent, and refused
    error = info.value
    assert error.status_code == 401
    shown = [str(error), repr(error), ws.url, repr(ws), *(repr(e) for e in events)]
    shown += [record.getMessage() for record in caplog.records]
    assert any(isinstance(e, ConnectFailed) for e in events)
    for text in shown:
        assert PASSWORD not in text
        assert base64.b64encode(f"alice:{PASSWORD}".encode()).decode() not in text
