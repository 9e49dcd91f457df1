"""Queues and workers in Chromium: an external worker claiming over HTTP appears on the
dashboard by name with its job and lease, then shows gone; the external queue's
depth; a queued job's page says no worker has claimed its kind, until one does; the
home page's External form takes JSON arguments. Axe-clean in light and dark, 390 px."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.conftest import Stack, start_stack, stop_stack
from tests.e2e.a11y import PHONE, assert_no_serious_axe_violations, page_width
from tests.support import TEST_WORKER_TOKEN, auth

GONE_AFTER = 6  # more than the dashboard's 3 s between snapshots


@pytest.fixture(scope="module")
def fleet_site(browser: Any, log_dir: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose workers show gone after GONE_AFTER seconds unseen (and 5 s leases)."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("e2e-fleet-redis"),
                          WORKER_GONE_AFTER=str(GONE_AFTER), WORKER_DROP_AFTER="600",
                          LEASE_SECONDS="5")  # a claimed job's lease lapses soon: then gone
    yield running
    stop_stack(running)


def start_external(site: Stack, args: dict[str, Any] | None = None) -> str:
    resp = requests.post(site.url + "/api/jobs", json={"kind": "external", "args": args or {}},
                         timeout=5)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def claim(site: Stack, worker: str) -> dict[str, Any]:
    resp = requests.post(site.url + "/api/workers/claim", headers=auth(TEST_WORKER_TOKEN),
                         json={"kinds": ["external"], "worker": worker, "wait": 0}, timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def assert_fits(page: Page) -> None:
    width = page_width(page)
    assert width <= PHONE["width"], f"the page is {width}px wide at {PHONE['width']}px"


def test_an_external_worker_appears_with_its_job_and_lease_then_gone(
        fleet_site: Stack, new_page: Callable[..., Page]) -> None:
    page = new_page()
    page.set_viewport_size(PHONE)
    page.goto(fleet_site.url + "/dashboard")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    expect(page.locator("#fleet-title")).to_have_text("Queues and workers")
    rq_row = page.locator('#workers tr[data-family="rq"]').first
    expect(rq_row.locator("td.worker-family")).to_have_text("RQ")

    job_id = start_external(fleet_site)
    depth = page.locator('#queue-rows tr[data-queue="ext:external"] td.queue-depth')
    expect(depth).to_have_text("1")  # the snapshot that follows the new row
    expect(page.locator("#queue-depth")).to_have_text("1")

    claimed = claim(fleet_site, "node-e2e")
    row = page.locator('#workers tr[data-worker="node-e2e"]')
    expect(row.locator("td.worker-status")).to_have_text("busy")
    expect(row.locator("td.worker-job a")).to_have_text(job_id[:8])
    expect(row.locator("td.worker-lease")).to_contain_text("left")
    expect(row.locator("td.worker-family")).to_have_text("external")
    expect(depth).to_have_text("0")
    assert_fits(page)
    for scheme in ("light", "dark"):
        assert_no_serious_axe_violations(page, scheme)

    done = requests.post(fleet_site.url + "/api/progress", headers=auth(claimed["token"]),
                         json={"jobId": job_id, "state": "succeeded", "progress": 100},
                         timeout=5)
    assert done.status_code < 300, done.text
    # Nothing changes on the page's jobs: the panel's own refresh shows it gone.
    expect(row.locator("td.worker-status")).to_have_text("gone", timeout=20_000)
    expect(page.locator("#worker-count")).not_to_have_text("0")  # the RQ worker is online


def test_a_queued_job_says_no_worker_claimed_until_one_does(
        fleet_site: Stack, new_page: Callable[..., Page]) -> None:
    requests.post(fleet_site.url + "/api/workers/claim", headers=auth(TEST_WORKER_TOKEN),
                  json={"kinds": ["external"], "worker": "early", "wait": 0}, timeout=5)
    job_id = start_external(fleet_site, {"n": 1})
    page = new_page()
    page.set_viewport_size(PHONE)
    page.goto(f"{fleet_site.url}/jobs/{job_id}")
    hint = page.locator("#no-worker")
    # A claim was just made: no words yet; GONE_AFTER later, the page says so live.
    expect(hint).to_have_text(
        f"No worker has claimed external jobs in the last {GONE_AFTER} s.")
    expect(hint).to_be_visible()
    assert_fits(page)
    for scheme in ("light", "dark"):
        assert_no_serious_axe_violations(page, scheme)
    got = claim(fleet_site, "late-worker")
    assert got["jobId"] == job_id
    expect(page.locator("#state")).to_have_text("running")
    expect(hint).to_be_hidden()


def test_the_home_external_form_takes_json_arguments(
        fleet_site: Stack, new_page: Callable[..., Page]) -> None:
    page = new_page()
    page.set_viewport_size(PHONE)
    page.goto(fleet_site.url + "/")
    field = page.locator("#f-external-args")
    expect(field).to_have_value("{}")
    field.fill('{"file": "a.csv"')
    page.locator("#kind-external button[type=submit]").click()
    expect(page.locator("#f-external-args-error")).to_contain_text("not valid JSON")
    expect(page.locator("#f-external-args")).to_have_attribute("aria-invalid", "true")
    assert_fits(page)
    for scheme in ("light", "dark"):
        assert_no_serious_axe_violations(page, scheme)
    page.locator("#f-external-args").fill('{"file": "a.csv", "rows": [1, 2]}')
    page.locator("#kind-external button[type=submit]").click()
    expect(page.locator("#state")).to_have_text("queued")
    job_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    got = claim(fleet_site, "form-worker")
    assert got["jobId"] == job_id and got["args"] == {"file": "a.csv", "rows": [1, 2]}
