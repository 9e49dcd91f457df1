"""A waiting job's page (#27 dependencies) in a real Chromium against the real stack: it
links each job it waits for and follows, live, as each one ends; axe clean, light and
dark, at 390 px. The jobs waited for are external ones, ended over the claim API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from shared.protocol import new_id
from tests.conftest import Stack
from tests.e2e.a11y import PHONE, assert_no_serious_axe_violations, page_width
from tests.support import TEST_WORKER_TOKEN, auth, wait_until


def start(site: Stack, body: dict[str, Any]) -> str:
    resp = requests.post(site.url + "/api/jobs", json=body, timeout=10)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def succeed(site: Stack, job_id: str) -> None:
    """Claim external jobs until ``job_id`` comes (others are ended), and succeed it."""
    def claimed() -> dict[str, Any] | None:
        resp = requests.post(site.url + "/api/workers/claim", headers=auth(TEST_WORKER_TOKEN),
                             json={"kinds": ["external"], "worker": "e2e"}, timeout=10)
        got = resp.json() if resp.status_code == 200 else None
        if got is not None and got["jobId"] != job_id:
            requests.post(site.url + "/api/progress", headers=auth(got["token"]), timeout=10,
                          json={"jobId": got["jobId"], "state": "cancelled"})
            return None
        return got

    got = wait_until(claimed, timeout=10, what=f"the claim of {job_id}")
    done = requests.post(site.url + "/api/progress", headers=auth(got["token"]), timeout=10,
                         json={"jobId": job_id, "state": "succeeded"})
    assert done.status_code == 204, done.text


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_waiting_page_links_its_jobs_and_follows_them_live(
        site: Stack, new_page: Callable[..., Page], scheme: str) -> None:
    first = start(site, {"kind": "external", "args": {"tag": new_id()}})
    second = start(site, {"kind": "external", "args": {"tag": new_id()}})
    job = start(site, {"kind": "demo", "args": {"steps": 2}, "after": [first, second]})
    page = new_page(color_scheme=scheme)
    page.set_viewport_size(PHONE)
    page.goto(f"{site.url}/jobs/{job}")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    summary = page.locator("#after-summary")
    expect(summary).to_have_text("Waiting for 2 of 2 jobs to succeed before it starts.")
    for dep in (first, second):
        link = page.get_by_role("link", name=f"Job {dep}")
        expect(link).to_have_attribute("href", f"/jobs/{dep}")
        expect(page.locator(f'li[data-job-id="{dep}"] .after-state')).to_have_text(
            "not finished yet")
    expect(page.locator("#state")).to_have_text("waiting")
    assert page_width(page) <= PHONE["width"]
    assert_no_serious_axe_violations(page, scheme)

    succeed(site, first)
    expect(page.locator(f'li[data-job-id="{first}"] .after-state')).to_have_text("done")
    expect(summary).to_have_text("Waiting for 1 of 2 jobs to succeed before it starts.")
    expect(page.locator(f'li[data-job-id="{second}"] .after-state')).to_have_text(
        "not finished yet")
    succeed(site, second)
    expect(summary).to_have_text("It waited for these jobs.")
    expect(page.locator(f'li[data-job-id="{second}"] .after-state')).to_have_text("done")
    expect(page.locator("#state")).to_have_text("succeeded", timeout=30_000)
    assert_no_serious_axe_violations(page, scheme)
