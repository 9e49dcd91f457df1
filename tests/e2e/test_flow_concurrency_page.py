"""A job held by its kind's concurrency limit, on its page in a real Chromium: the
page says in words which limit holds it, at 390 px in light and dark (axe clean),
and the line goes away live when the job takes a free slot."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.conftest import Stack, start_stack, stop_stack
from tests.e2e.a11y import PHONE, assert_no_serious_axe_violations, page_width


@pytest.fixture(scope="module")
def limited_site(browser: Any, log_dir: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack declaring the limited kinds of tests/concurrency_kinds.py."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("e2e-conc-redis"),
                          JOB_KINDS="tests.concurrency_kinds", RATE_LIMIT="0",
                          RATE_LIMIT_GLOBAL="0")
    yield running
    stop_stack(running)


def start(site: Stack, account: str, hold: float) -> str:
    resp = requests.post(site.url + "/api/jobs", timeout=5, json={
        "kind": "per_account", "args": {"account": account, "hold": hold}})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_page_says_what_holds_the_job_then_lets_it_go(
        limited_site: Stack, new_page: Callable[..., Page], scheme: str) -> None:
    account = f"a-{scheme}-account-with-a-rather-long-name-" + "x" * 30  # cut, and wrapped at 390 px
    start(limited_site, account, hold=8)
    held = start(limited_site, account, hold=0.2)
    page = new_page(color_scheme=scheme)
    page.set_viewport_size(PHONE)
    page.goto(f"{limited_site.url}/jobs/{held}")
    line = page.locator("#held-line")
    expect(line).to_be_visible()
    expect(line).to_contain_text(f"Waiting for a free slot: 1 of 1 running for "
                                 f"account={account[:59]}…")
    assert page_width(page) <= PHONE["width"]
    assert_no_serious_axe_violations(page, scheme)
    expect(page.locator("#state")).to_have_text("succeeded", timeout=20_000)
    expect(line).to_be_hidden()
