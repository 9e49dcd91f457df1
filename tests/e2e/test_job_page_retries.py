"""The job page of a kind that retries, in a real Chromium against a real stack: the
countdown to the next attempt ("Attempt 2 of 3 in 44 s"), live, and the earlier
attempts' errors; axe-clean in light and dark, at 390 px."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.conftest import Stack, start_stack, stop_stack
from tests.e2e.a11y import PHONE, assert_no_serious_axe_violations, page_width

COUNTDOWN = re.compile(r"^Attempt 2 of 3 in (\d+) s$")


@pytest.fixture(scope="module")
def retry_site(browser: Any, log_dir: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack declaring the retrying test kinds (tests/retry_kinds.py)."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("e2e-retries-redis"),
                          JOB_KINDS="tests.retry_kinds", RATE_LIMIT="0", RATE_LIMIT_GLOBAL="0")
    yield running
    stop_stack(running)


def start(site: Stack, kind: str, args: dict[str, Any]) -> str:
    resp = requests.post(site.url + "/api/jobs", json={"kind": kind, "args": args}, timeout=5)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def seconds_left(page: Page) -> int:
    match = COUNTDOWN.match(page.locator("#attempt-line").inner_text())
    assert match, page.locator("#attempt-line").inner_text()
    return int(match.group(1))


def test_the_page_counts_down_to_the_next_attempt_and_lists_the_earlier_ones(
        retry_site: Stack, page: Page) -> None:
    job_id = start(retry_site, "patient", {"fails": 1})  # backoff [45]
    page.goto(f"{retry_site.url}/jobs/{job_id}")  # queued or running: it fails live
    expect(page.locator("#state")).to_have_text("scheduled")
    expect(page.locator("#attempt-line")).to_have_text(COUNTDOWN)
    first = seconds_left(page)
    assert 30 <= first <= 45
    expect(page.locator("#attempt-line")).not_to_have_text(f"Attempt 2 of 3 in {first} s")
    assert seconds_left(page) < first  # it counts down by itself, between pushes
    earlier = page.locator("#attempts li")
    expect(earlier).to_have_count(1)
    expect(earlier.first).to_have_text(re.compile(
        r"^Attempt 1 failed at \S+Z: ValueError: the service answered 503 on attempt 1$"))
    expect(page.locator("#message")).to_have_text(": attempt 1 of 3 failed; retrying")

    page.reload()  # the same, rendered by the server
    expect(page.locator("#attempt-line")).to_have_text(COUNTDOWN)
    expect(page.locator("#attempts li")).to_have_count(1)


def test_a_job_that_succeeds_on_a_retry_keeps_its_earlier_attempt(
        retry_site: Stack, page: Page) -> None:
    job_id = start(retry_site, "flaky", {"fails": 1})  # backoff [1, 2]
    page.goto(f"{retry_site.url}/jobs/{job_id}")
    expect(page.locator("#state")).to_have_text("succeeded")
    expect(page.locator("#attempt-line")).to_have_text("Attempt 2 of 4")
    expect(page.locator("#attempts li")).to_have_text(
        [re.compile(r"^Attempt 1 failed at \S+Z: RuntimeError: attempt 1 fails on purpose$")])


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_retrying_job_page_fits_a_phone_and_passes_axe(
        retry_site: Stack, new_page: Callable[..., Page], scheme: str) -> None:
    job_id = start(retry_site, "patient", {"fails": 1})
    page = new_page(color_scheme=scheme)
    page.set_viewport_size(PHONE)
    page.goto(f"{retry_site.url}/jobs/{job_id}")
    expect(page.locator("#attempt-line")).to_have_text(COUNTDOWN)
    expect(page.locator("#attempts li")).to_have_count(1)
    assert page_width(page) <= PHONE["width"]
    assert_no_serious_axe_violations(page, scheme)
