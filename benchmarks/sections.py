"""Sections of docs/benchmarks.md that separate runs write, between marker comments.

``benchmarks.suite`` rewrites the whole report; every section written by another tool
(``benchmarks.deflate``, ``benchmarks.pool``, or by hand from ``benchmarks.ab`` and
``benchmarks.budget``) sits between ``<!-- NAME: start ... -->`` and ``<!-- NAME: end -->`` and is
kept, in its order, at the end of the new report.
"""

from __future__ import annotations

import re
from pathlib import Path

_MARKED = re.compile(r"<!-- (?P<name>[^:>]+): start[^>]*-->.*?<!-- (?P=name): end -->", re.DOTALL)


def start_marker(name: str, source: str) -> str:
    return f"<!-- {name}: start ({source}) -->"


def end_marker(name: str) -> str:
    return f"<!-- {name}: end -->"


def marked_sections(path: Path) -> list[str]:
    """Every marked section of ``path``, in order (none if it does not exist)."""
    text = path.read_text() if path.exists() else ""
    return [match.group(0) for match in _MARKED.finditer(text)]


def write_section(path: Path, name: str, section: str) -> None:
    """Replace the section ``name`` of ``path`` by ``section`` (which carries its own markers),
    or append it when ``path`` has none yet."""
    text = path.read_text() if path.exists() else ""
    start = f"<!-- {name}: start"
    end = end_marker(name)
    if start in text and end in text:
        before, _, rest = text.partition(start)
        _, _, after = rest.partition(end)
        text = before + section + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
