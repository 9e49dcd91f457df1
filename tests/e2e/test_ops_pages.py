"""The operators' pages of many jobs at 390 px, light and dark: the filtered dashboard
with schedules, the bulk confirmation and the job detail page (axe-core, no sideways
scroll)."""

from __future__ import annotations

from collections.abc import Callable

import requests
from playwright.sync_api import Page, expect

from tests.conftest import Stack
from tests.e2e.a11y import PHONE, assert_no_serious_axe_violations, page_width
from tests.support import TEST_OPS_TOKEN, auth, wait_until


def check(page: Page) -> None:
    width = page_width(page)
    assert width <= PHONE["width"], f"{page.url} is {width}px wide at {PHONE['width']}px"
    for scheme in ("light", "dark"):
        assert_no_serious_axe_violations(page, scheme)


def test_ops_pages_on_a_phone(site: Stack, new_page: Callable[..., Page]) -> None:
    job_id = requests.post(f"{site.url}/api/jobs", json={"args": {"steps": 2}},
                           timeout=5).json()["id"]
    wait_until(lambda: site.job_state(job_id)["state"] == "succeeded", timeout=30,
               what="the job to finish")
    created = requests.post(f"{site.url}/api/schedules",
                            json={"cron": "*/5 * * * *", "kind": "demo"}, timeout=5,
                            headers=auth(TEST_OPS_TOKEN))
    assert created.status_code == 201
    page = new_page()
    page.set_viewport_size(PHONE)
    page.goto(site.url + "/dashboard?state=succeeded&kind=demo")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    expect(page.locator(f'#job-rows tr[data-job-id="{job_id}"]')).to_have_count(1)
    expect(page.locator("#schedules li")).to_have_count(1)
    check(page)
    page.click("#bulk-retry")
    expect(page.locator("#bulk-count")).to_contain_text("job")
    check(page)
    page.goto(f"{site.url}/dashboard/jobs/{job_id}")
    expect(page.locator("#detail-timeline li")).to_have_count(3)
    check(page)


def test_batch_page_live_on_a_phone(site: Stack, new_page: Callable[..., Page]) -> None:
    resp = requests.post(f"{site.url}/api/batches", timeout=10,
                         json={"kind": "demo", "items": [{"steps": 2}] * 6})
    assert resp.status_code == 202
    batch_id = resp.json()["batchId"]
    page = new_page()
    page.set_viewport_size(PHONE)
    page.goto(f"{site.url}/batches/{batch_id}")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    expect(page.locator("#batch-done")).to_have_text("6")  # pushed live as children end
    expect(page.locator("#batch-complete")).to_have_text(": complete")
    expect(page.locator('#batch-counts li[data-state="succeeded"] strong')).to_have_text("6")
    check(page)
