"""docs/configuration.md lists every declared setting (shared/settings.py) in one
table, with the same default, concern and deploy mark, and nothing else; no
other page keeps a table of settings of its own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from shared.settings import SETTINGS
from shared.settingtypes import Setting
from tests.support import ROOT

DOC = ROOT / "docs" / "configuration.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ROW = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|")
CELL = re.compile(r"(?<!\\)\|")  # a cell boundary: a pipe not escaped as \|


def cells(line: str) -> list[str]:
    """The cells of a Markdown table row, stripped."""
    return [cell.strip() for cell in CELL.split(line.strip())[1:-1]]


def setting_rows(page: Path) -> list[list[str]]:
    """The table rows of ``page`` whose first cell is one upper-case name in backticks."""
    return [cells(line) for line in page.read_text().splitlines() if ROW.match(line)]


def documented() -> dict[str, list[str]]:
    """docs/configuration.md's table: name -> [default, concern, deploy, meaning]."""
    rows = setting_rows(DOC)
    table: dict[str, list[str]] = {}
    for row in rows:
        name = row[0].strip("`")
        assert name not in table, f"{name} is listed twice"
        assert len(row) == 5, f"{name}: expected 5 cells, got {row}"
        table[name] = row[1:]
    return table


def test_every_declared_setting_is_documented_once_and_nothing_else() -> None:
    table = documented()
    declared = [s.name for s in SETTINGS]
    missing = [n for n in declared if n not in table]
    unknown = [n for n in table if n not in declared]
    assert not missing, "add to docs/configuration.md: " + "; ".join(
        f"| `{s.name}` | {s.default_text} | {s.concern} | {'yes' if s.deploy else ''} | "
        f"{s.meaning} |" for s in SETTINGS if s.name in missing)
    assert not unknown, f"docs/configuration.md lists settings nobody declares: {unknown}"
    assert list(table) == declared, "list them in the order of shared/settings.py"


@pytest.mark.parametrize("setting", SETTINGS, ids=[s.name for s in SETTINGS])
def test_default_concern_and_deploy_mark_agree(setting: Setting[Any]) -> None:
    row = documented().get(setting.name)
    assert row, f"{setting.name} is not in docs/configuration.md"
    default, concern, deploy, meaning = row
    assert default == setting.default_text
    assert concern == setting.concern
    assert deploy == ("yes" if setting.deploy else "")
    assert meaning


def test_the_intro_names_the_settings_a_deployment_sets() -> None:
    intro = DOC.read_text().split("## Every setting")[0]
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", intro.split("## What a deployment sets")[1]))
    assert {s.name for s in SETTINGS if s.deploy} <= named


@pytest.mark.parametrize("page", [p for p in PAGES if p != DOC],
                         ids=[str(p.relative_to(ROOT)) for p in PAGES if p != DOC])
def test_no_other_page_keeps_a_table_of_settings(page: Path) -> None:
    declared = {s.name for s in SETTINGS}
    rows = [row[0] for row in setting_rows(page) if row[0].strip("`") in declared]
    assert not rows, f"{page.relative_to(ROOT)}: link to docs/configuration.md instead of {rows}"
