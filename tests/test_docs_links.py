"""Every relative link of README.md and docs/*.md points to a file that exists,
and a ``#fragment`` to a heading of that file (as GitHub makes its anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
FENCE = re.compile(r"^\s*```")
CODE_SPAN = re.compile(r"`[^`]*`")


def prose(page: Path) -> list[str]:
    """The lines of ``page`` outside fenced code blocks, without inline code."""
    lines, fenced = [], False
    for line in page.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(CODE_SPAN.sub("", line))
    return lines


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of ``page`` (``-1`` and on for repeats)."""
    found: set[str] = set()
    for line in prose(page):
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading is None:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        name, n = slug, 0
        while name in found:
            n += 1
            name = f"{slug}-{n}"
        found.add(name)
    return found


def relative_links(page: Path) -> list[str]:
    """The link targets of ``page`` that are not URLs (``http:``, ``mailto:``...)."""
    return [target for line in prose(page) for target in LINK.findall(line)
            if not SCHEME.match(target)]


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` to a missing file or heading, each with why."""
    broken = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no file {file})")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target} (no heading #{fragment} in {file.name})")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_point_to_existing_files_and_headings(page: Path) -> None:
    assert not broken_links(page), f"{page.relative_to(ROOT)}: broken links"


def test_the_checker_finds_a_link_relative_to_the_wrong_folder(tmp_path: Path) -> None:
    page = tmp_path / "docs" / "a.md"
    page.parent.mkdir()
    page.write_text("See [b](docs/b.md), [`c`](c.md#two), [c](c.md#three), [a](#a) and\n"
                    "`[x](nowhere.md)` in code:\n```\n[y](nowhere.md)\n```\n# A\n")
    (tmp_path / "docs" / "b.md").write_text("# B\n")
    (tmp_path / "docs" / "c.md").write_text("# One\n## Two\n")
    assert [link.split(" ")[0] for link in broken_links(page)] == ["docs/b.md", "c.md#three"]
