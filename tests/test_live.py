"""The live panel (``--live``, ``_live.py``) and the NDJSON pipe (``--format ndjson``), issue 16
item 9. The panel is tested through its pure rendering function, its snapshot of a real manager
(both backends), and the command in a subprocess; NDJSON as output that parses.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable

import anyio
import pytest
from rich.console import Console

from managed_websocket import DisconnectReason, Outage
from managed_websocket._live import Rates, Snapshot, render, snapshot, truncate
from managed_websocket.cli import ndjson_line
from managed_websocket.testing import open_test_server

COMMAND = [sys.executable, "-m", "managed_websocket"]
R = DisconnectReason


async def wait_until(predicate: Callable[[], bool]) -> None:
    while not predicate():  # noqa: ASYNC110 - nothing signals these conditions
        await anyio.sleep(0.01)


def text_of(snap: Snapshot, width: int = 140) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(render(snap))
    return console.export_text()


# -- rates ----------------------------------------------------------------------------------------


def test_rates_now_and_over_the_minute() -> None:
    rates = Rates()
    # 10 msg/s and 1000 B/s for 59 s, then 100 msg/s and 5000 B/s for the last second.
    messages = size = 0
    for second in range(60):
        rates.add(float(second), messages, size)
        messages += 10
        size += 1000
    rates.add(60.0, messages + 90, size + 4000)
    now, bytes_now = rates.per_second(60.0, 1.0)
    assert (now, bytes_now) == (100.0, 5000.0)
    minute, _ = rates.per_second(60.0, 60.0)
    assert minute == pytest.approx((600 + 90) / 60)


def test_rates_before_a_minute_average_over_what_was_sampled() -> None:
    rates = Rates()
    assert rates.per_second(0.0, 1.0) == (0.0, 0.0)
    rates.add(0.0, 0, 0)
    assert rates.per_second(0.0, 1.0) == (0.0, 0.0)  # one sample: no interval yet
    rates.add(2.0, 40, 400)
    assert rates.per_second(2.0, 60.0) == (20.0, 200.0)


def test_rates_keep_a_bounded_history() -> None:
    rates = Rates()
    for tick in range(10_000):
        rates.add(tick * 0.25, tick, tick)
    assert len(rates._samples) <= 60 * 4 + 2


# -- rendering ------------------------------------------------------------------------------------


def sample_snapshot(**changes: object) -> Snapshot:
    values: dict[str, object] = {
        "state": "CONNECTED",
        "url": "wss://feed.example/ws?token=***",
        "uptime": 3725.0,
        "rate_now": 12.0,
        "rate_minute": 9.5,
        "bytes_per_second": 2048.0,
        "latency": 0.0123,
        "dropped": 7,
        "reconnects": 2,
        "last_disconnect": "12:00:01 SERVER_CLOSED (code 1013, reason 'maintenance')",
        "outages": (
            Outage(1.0, 1.5, R.SERVER_CLOSED, 1013, started_at=time.time()),
            Outage(5.0, 5.01, R.USER_REQUESTED, 1000, covered=True),
            Outage(9.0, None, R.PING_TIMEOUT, None),
        ),
        "recent": ('{"seq":1}', "x" * 300),
    }
    values.update(changes)
    return Snapshot(**values)  # type: ignore[arg-type]


def test_the_panel_shows_every_figure() -> None:
    text = text_of(sample_snapshot())
    for expected in (
        "wss://feed.example/ws?token=***",
        "CONNECTED",
        "1:02:05",  # uptime
        "12.0 now, 9.5 1-min avg",
        "2.0 KiB/s",
        "12.3 ms",
        "drops",
        "SERVER_CLOSED (code 1013, reason 'maintenance')",
        "started",
        "duration",
        "cause",
        "500 ms",
        "USER_REQUESTED (covered)",
        "open",
        '{"seq":1}',
        "…",  # the long message is cut
    ):
        assert expected in text, expected
    assert "x" * 100 not in text


def test_the_panel_before_anything_happened() -> None:
    text = text_of(
        sample_snapshot(
            state="CONNECTING", latency=None, last_disconnect=None, outages=(), recent=()
        )
    )
    assert "CONNECTING" in text
    assert "(none yet)" in text
    assert "none" in text


def test_only_the_last_outages_are_listed() -> None:
    many = tuple(Outage(float(i), i + 0.1, R.NETWORK_ERROR, 1006) for i in range(12))
    text = text_of(sample_snapshot(outages=many))
    assert text.count("NETWORK_ERROR") == 5
    assert "the last 5 of 12" in text


def test_truncate_keeps_one_line() -> None:
    assert truncate("a\nb", 10) == "a⏎b"
    assert truncate("abcdef", 4) == "abc…"


# -- a snapshot of a real manager -----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_snapshot_of_a_running_manager() -> None:
    from managed_websocket import ManagedWebSocket

    async with open_test_server(echo=False) as server:
        ws = ManagedWebSocket(
            server.url + "/feed?token=s3cret", reconnect_delay=0.01, reconnect_jitter=0.0
        )
        rates = Rates()
        recent: deque[str] = deque(["hello"], maxlen=5)
        with anyio.fail_after(10):
            async with ws:
                first = snapshot(ws, rates, recent, anyio.current_time())
                for n in range(20):
                    await server.broadcast(json.dumps({"n": n}))
                for _ in range(20):
                    await ws.receive()
                await server.close_clients(4000, "bye")
                await wait_until(lambda: ws.is_connected and ws.stats.connects == 2)
                await anyio.sleep(0.05)
                later = snapshot(ws, rates, recent, anyio.current_time())
    assert first.state == "CONNECTED"
    assert "s3cret" not in first.url
    assert later.reconnects == 1
    assert later.last_disconnect is not None
    assert "SERVER_CLOSED (code 4000, reason 'bye')" in later.last_disconnect
    assert len(later.outages) == 1
    assert later.rate_minute > 0  # 20 messages came in between the samples
    assert later.recent == ("hello",)
    assert "s3cret" not in text_of(later)


# -- the command ----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the command picks its own event loop
async def test_live_draws_the_panel_and_still_pipes_the_messages() -> None:
    async with open_test_server(echo=False) as server:
        with anyio.fail_after(30):
            process = await anyio.open_process(
                [*COMMAND, server.url + "/?token=s3cret", "--live", "--count", "3"]
            )
            async with process:
                await server.wait_for_handshakes(1)
                await anyio.sleep(0.6)  # a couple of redraws first
                for n in range(3):
                    await server.broadcast(json.dumps({"n": n}))
                assert await process.wait() == 0
                assert process.stdout is not None
                assert process.stderr is not None
                out = (await process.stdout.receive()).decode()
                err = b""
                async for chunk in process.stderr:
                    err += chunk
    panel = err.decode()
    assert "managed-websocket" in panel
    assert "token=***" in panel
    assert "s3cret" not in panel
    assert "last messages" in panel
    assert "msg/s" in panel
    assert out.splitlines()[0] == '{"n":0}'  # stdout is a pipe: the messages go there too


def test_live_without_rich_is_a_one_line_usage_error_naming_the_extra() -> None:
    code = (
        "import sys; sys.modules['rich'] = None\n"
        "from managed_websocket.cli import main\n"
        "sys.exit(main(['ws://127.0.0.1:9/', '--live']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "pip install 'managed-websocket[cli]'" in done.stderr


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_ndjson_is_one_parsable_object_per_message_with_its_receive_time() -> None:
    sent: list[str | bytes] = ['{"price": 1.5, "sym": "BTC"}', "plain text", b"\x00\x01", "[1,2]"]
    async with open_test_server(echo=False) as server:
        with anyio.fail_after(30):
            before = time.time()
            process = await anyio.open_process(
                [*COMMAND, server.url, "--format", "ndjson", "--count", str(len(sent))]
            )
            async with process:
                await server.wait_for_handshakes(1)
                for message in sent:
                    await server.broadcast(message)
                assert await process.wait() == 0
                assert process.stdout is not None
                out = b""
                async for chunk in process.stdout:
                    out += chunk
            after = time.time()
    records = [json.loads(line) for line in out.decode().splitlines()]
    assert [r.get("message", r.get("binary_hex")) for r in records] == [
        {"price": 1.5, "sym": "BTC"},
        "plain text",
        "0001",
        [1, 2],
    ]
    times = [r["received_at"] for r in records]
    assert before <= times[0] <= times[-1] <= after
    assert times == sorted(times)


def test_ndjson_line_raw_keeps_the_text() -> None:
    line = ndjson_line('{"a": 1}', 1700000000.5, raw=True)
    assert json.loads(line) == {"received_at": 1700000000.5, "message": '{"a": 1}'}
