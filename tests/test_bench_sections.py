"""The sections of docs/benchmarks.md written by separate runs (``benchmarks/sections.py``):
the suite's rewrite keeps every marked section, and a tool replaces only its own."""

from __future__ import annotations

from pathlib import Path

from benchmarks.sections import end_marker, marked_sections, start_marker, write_section

ROOT = Path(__file__).resolve().parent.parent


def section(name: str, body: str) -> str:
    return f"{start_marker(name, 'benchmarks/x.py')}\n{body}\n{end_marker(name)}"


def test_write_appends_then_replaces_only_its_own_section(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nthe suite's tables\n")
    write_section(page, "one", section("one", "first"))
    write_section(page, "two", section("two", "second"))
    write_section(page, "one", section("one", "first, again"))

    text = page.read_text()
    assert text.startswith("# Benchmarks\n\nthe suite's tables\n")
    assert marked_sections(page) == [section("one", "first, again"), section("two", "second")]
    assert "first\n" not in text


def test_a_missing_page_has_no_sections(tmp_path: Path) -> None:
    assert marked_sections(tmp_path / "missing.md") == []


def test_the_published_page_marks_the_sections_the_suite_does_not_write() -> None:
    names = [
        text.split(":")[0].removeprefix("<!-- ")
        for text in marked_sections(ROOT / "docs" / "benchmarks.md")
    ]
    assert names == ["compressed firehose", "round trip"]
