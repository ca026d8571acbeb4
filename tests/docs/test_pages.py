"""The docs state facts that live in the code; these tests keep the two from drifting apart."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import managed_websocket
import managed_websocket.testing
from managed_websocket import ConnectionState, ManagedWebSocketOptions, ReconnectStrategy
from managed_websocket._backoff import jittered, nominal_delay
from managed_websocket._manager._state import TRANSITIONS
from managed_websocket._settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def table_rows(page: str) -> list[list[str]]:
    """The cells of every markdown table row of ``page`` (header and separator rows included)."""
    text = (DOCS / page).read_text()
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|")
    ]


def test_state_table_matches_the_transition_table() -> None:
    documented = {}
    for cells in table_rows("concepts.md"):
        state = cells[0].strip("`")
        if state in ConnectionState.__members__:
            targets = re.findall(r"`(\w+)`", cells[1])
            documented[ConnectionState[state]] = frozenset(ConnectionState[t] for t in targets)
    assert documented == TRANSITIONS


@pytest.mark.parametrize(
    ("module", "directive"),
    [(managed_websocket, "managed_websocket."), (managed_websocket.testing, "testing.")],
)
def test_api_reference_covers_every_public_name(module: object, directive: str) -> None:
    api = (DOCS / "api.md").read_text()
    documented = set(re.findall(r"^\.\. (?:auto\w+|py:data):: ([\w.]+)", api, re.MULTILINE))
    prefix = f"{module.__name__}."  # type: ignore[attr-defined]
    missing = [name for name in module.__all__ if prefix + name not in documented]  # type: ignore[attr-defined]
    assert not missing, f"api.md does not document {missing}"


def test_options_page_lists_every_option_with_its_default() -> None:
    rows = {cells[0].strip("`").split("(")[0]: cells for cells in table_rows("options.md")}
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    for option in ManagedWebSocketOptions.__annotations__:
        assert option in rows, f"options.md does not list {option}"
        default = defaults.get(option)
        if isinstance(default, (bool, int, float, str)) or default is None:
            shown = f'"{default}"' if isinstance(default, str) else repr(default)
            assert rows[option][1].startswith(f"`{shown}`"), (option, rows[option][1])


def test_default_backoff_table_matches_the_policy() -> None:
    settings = Settings()
    rows = [cells for cells in table_rows("guides/reconnection.md") if cells[0].isdigit()]
    assert [int(cells[0]) for cells in rows] == list(range(1, 11))
    for cells in rows:
        nominal = nominal_delay(
            ReconnectStrategy.EXPONENTIAL_BACKOFF,
            int(cells[0]),
            base=settings.reconnect_delay,
            maximum=settings.max_reconnect_delay,
        )
        low = jittered(nominal, settings.reconnect_jitter, 1.0)
        assert cells[1:] == [f"{nominal:g}", f"{low:g}–{nominal:g}"]


def test_every_example_is_run_and_shown() -> None:
    tests = "".join(test.read_text() for test in Path(__file__).parent.glob("test_*.py"))
    pages = "".join(page.read_text() for page in DOCS.rglob("*.md"))
    for example in (DOCS / "examples").glob("*.py"):
        assert f'"{example.stem}"' in tests, f"{example.name} is not run by a test"
        assert f"examples/{example.name}" in pages, f"{example.name} is not shown in the docs"
