"""The page scripts take event and state names from shared/protocol.py only (and the
events a feature adds to it: the highlighter's ``highlight``).

Every name the server uses on the wire (events, job states) must reach the
scripts through ``browser_contract()``, rendered into each page; a script that
spells one of them as a string literal could drift from the server unnoticed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared import protocol
from shared.kinds.highlight.snippets import HIGHLIGHT
from shared.protocol import browser_contract

JS_DIR = Path(__file__).resolve().parent.parent / "website" / "static" / "js"
SCRIPTS = sorted(JS_DIR.glob("*.js"))
WIRE_NAMES = {
    protocol.UPDATE_PROGRESS, HIGHLIGHT, protocol.SUBSCRIBE,
    protocol.DASHBOARD_UPDATE, protocol.DASHBOARD_SUBSCRIBE, protocol.JOB_LOG, protocol.BATCH_PROGRESS,
    *protocol.STATES,
}
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_STRING = re.compile(r"\"((?:[^\"\\\n]|\\.)*)\"|'((?:[^'\\\n]|\\.)*)'")


def string_literals(source: str) -> set[str]:
    """The string literals of a script, comments left out."""
    code = _COMMENT.sub("", source)
    return {a or b for a, b in _STRING.findall(code)}


def test_there_are_scripts_to_check() -> None:
    assert {p.name for p in SCRIPTS} >= {"job.js", "job-control.js", "dashboard.js", "snippet.js"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_spell_no_wire_name(script: Path) -> None:
    spelled = string_literals(script.read_text(encoding="utf-8")) & WIRE_NAMES
    assert not spelled, f"{script.name} spells {sorted(spelled)}: use window.JobcastProtocol"


def test_the_literal_finder_finds_names() -> None:
    """The check above can fail: a script that spells a name is caught."""
    assert string_literals('socket.on("updateProgress", f); /* "queued" */') == {"updateProgress"}


def test_contract_names_every_wire_name() -> None:
    contract = browser_contract({"highlight": HIGHLIGHT})  # the highlighter adds its event
    named = set(contract["events"].values()) | set(contract["states"].values())
    assert named == WIRE_NAMES
    assert set(contract["terminal"]) == protocol.TERMINAL_STATES
    assert set(contract["cancellable"]) == protocol.CANCELLABLE_STATES
    assert set(contract["retryable"]) == protocol.RETRYABLE_STATES


def test_pages_carry_the_contract(client) -> None:
    job_id = client.post("/api/jobs").get_json()["id"]
    html = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    match = re.search(r'<script id="jobcast-protocol" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the page must carry the protocol JSON"
    assert json.loads(match.group(1)) == browser_contract({"highlight": HIGHLIGHT})
    assert "/static/js/protocol.js" in html
