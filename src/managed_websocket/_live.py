"""The live terminal panel of ``managed-websocket URL --live`` (rich: the ``[cli]`` extra).

Three parts, so the drawing is testable without a terminal:

- :class:`Rates` turns samples of the manager's counters into msg/s now (the last second), the
  1-minute average and bytes/s;
- :func:`snapshot` reads a manager into a frozen :class:`Snapshot`;
- :func:`render` draws a snapshot as a rich renderable (pure: the same snapshot, the same panel).

:func:`run_panel` redraws a few times a second until cancelled. Only this module imports rich,
and only when ``--live`` is asked for: the core never needs it.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ._exceptions import describe_close
from ._ledger import Outage

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from ._manager import ManagedWebSocket

__all__ = ["REFRESH_PER_SECOND", "Rates", "Snapshot", "render", "run_panel", "snapshot"]

REFRESH_PER_SECOND = 4
RECENT_MESSAGES = 5  # the last few messages shown
MESSAGE_WIDTH = 90  # characters of each shown message
OUTAGE_ROWS = 5  # the most recent outages shown


class Rates:
    """Rates from ``(time, messages, bytes)`` samples of cumulative counters."""

    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int, int]] = deque()

    def add(self, now: float, messages: int, size: int) -> None:
        self._samples.append((now, messages, size))
        while len(self._samples) > 2 and now - self._samples[1][0] >= 60.0:
            self._samples.popleft()  # keep one sample at least 60 s old, for the average

    def _since(self, now: float, window: float) -> tuple[float, int, int] | None:
        """The latest sample at least ``window`` seconds old (or the oldest one)."""
        chosen = None
        for sample in self._samples:
            if now - sample[0] >= window or chosen is None:
                chosen = sample
            else:
                break
        return chosen

    def per_second(self, now: float, window: float) -> tuple[float, float]:
        """(messages/s, bytes/s) over the last ``window`` seconds (or as long as sampled)."""
        if not self._samples:
            return 0.0, 0.0
        start = self._since(now, window)
        end = self._samples[-1]
        assert start is not None
        elapsed = end[0] - start[0]
        if elapsed <= 0:
            return 0.0, 0.0
        return (end[1] - start[1]) / elapsed, (end[2] - start[2]) / elapsed


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the panel shows, read at one instant."""

    state: str
    url: str
    uptime: float
    rate_now: float  # messages/s over the last second
    rate_minute: float  # messages/s over the last minute (or since the start)
    bytes_per_second: float
    latency: float | None
    dropped: int
    reconnects: int
    last_disconnect: str | None
    outages: tuple[Outage, ...]
    recent: tuple[str, ...]


def snapshot(ws: ManagedWebSocket, rates: Rates, recent: deque[str], now: float) -> Snapshot:
    """Read ``ws`` now; ``rates`` gets a new sample first."""
    stats = ws.stats
    rates.add(now, stats.messages_received, stats.bytes_received)
    rate_now, bytes_now = rates.per_second(now, 1.0)
    rate_minute, _ = rates.per_second(now, 60.0)
    last = ws.last_disconnect
    disconnect = None
    if last is not None:
        at = time.strftime("%H:%M:%S", time.localtime(last.at)) if last.at else "?"
        disconnect = f"{at} {last.reason.name} ({describe_close(last.code, last.close_reason)})"
    return Snapshot(
        state=ws.state.name,
        url=ws.url,
        uptime=stats.uptime,
        rate_now=rate_now,
        rate_minute=rate_minute,
        bytes_per_second=bytes_now,
        latency=stats.latency,
        dropped=stats.messages_dropped,
        reconnects=max(stats.connects - 1, 0),
        last_disconnect=disconnect,
        outages=ws.outages,
        recent=tuple(recent),
    )


def truncate(text: str, width: int = MESSAGE_WIDTH) -> str:
    """One line of at most ``width`` characters (line breaks shown as ``⏎``)."""
    text = text.replace("\r\n", "⏎").replace("\n", "⏎")
    return text if len(text) <= width else text[: width - 1] + "…"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _bytes(rate: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if rate < 1024 or unit == "MiB":
            return f"{rate:.0f} {unit}/s" if unit == "B" else f"{rate:.1f} {unit}/s"
        rate /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


_STATE_STYLE = {"CONNECTED": "bold green", "CONNECTING": "yellow", "RECONNECTING": "yellow"}


def render(snap: Snapshot) -> RenderableType:
    """The panel for ``snap``: a summary grid, the outage ledger, the last messages."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    grid.add_column(style="dim")
    grid.add_column()
    latency = "-" if snap.latency is None else f"{snap.latency * 1000:.1f} ms"
    grid.add_row(
        "state", Text(snap.state, style=_STATE_STYLE.get(snap.state, "red")), "uptime",
        _duration(snap.uptime),
    )  # fmt: skip
    grid.add_row(
        "msg/s", f"{snap.rate_now:.1f} now, {snap.rate_minute:.1f} 1-min avg", "bytes/s",
        _bytes(snap.bytes_per_second),
    )  # fmt: skip
    grid.add_row("latency", latency, "drops", str(snap.dropped))
    grid.add_row("reconnects", str(snap.reconnects), "", "")
    grid.add_row("last disconnect", snap.last_disconnect or "none", "", "")

    outages = Table(title="outages (ws.outages)", title_justify="left", expand=True)
    for name in ("started", "duration", "cause", "code"):
        outages.add_column(name)
    shown = snap.outages[-OUTAGE_ROWS:]
    for outage in shown:
        started = (
            time.strftime("%H:%M:%S", time.localtime(outage.started_at))
            if outage.started_at is not None
            else "-"
        )
        duration = "open" if outage.duration is None else f"{outage.duration * 1000:.0f} ms"
        cause = outage.reason.name + (" (covered)" if outage.covered else "")
        outages.add_row(started, duration, cause, "-" if outage.code is None else str(outage.code))
    if not shown:
        outages.add_row("none", "", "", "")
    elif len(snap.outages) > len(shown):
        outages.caption = f"the last {len(shown)} of {len(snap.outages)}"

    messages = Text(no_wrap=True, overflow="ellipsis")
    messages.append("last messages\n", style="bold")
    for line in snap.recent or ("(none yet)",):
        messages.append(truncate(line) + "\n")
    return Panel(
        Group(grid, outages, messages),
        title=f"managed-websocket  {snap.url}",
        title_align="left",
        subtitle="Ctrl-C to stop",
    )


async def run_panel(
    ws: ManagedWebSocket, recent: deque[str], console: Console | None = None
) -> None:
    """Redraw the panel :data:`REFRESH_PER_SECOND` times a second until cancelled."""
    from rich.live import Live

    rates = Rates()
    clock = anyio.current_time
    live_options: dict[str, Any] = {"console": console} if console is not None else {}
    with Live(
        render(snapshot(ws, rates, recent, clock())), auto_refresh=False, **live_options
    ) as live:
        try:
            while True:
                await anyio.sleep(1 / REFRESH_PER_SECOND)
                live.update(render(snapshot(ws, rates, recent, clock())), refresh=True)
        finally:
            live.update(render(snapshot(ws, rates, recent, clock())), refresh=True)
