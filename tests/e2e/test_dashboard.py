"""The dashboard in Chromium, under the site's CSP: rows arrive, change and
come back live over Socket.IO (``jobChanged``), and the queue and worker counts
refresh without a reload."""

from __future__ import annotations

from collections.abc import Callable

import requests
from playwright.sync_api import Page, expect

from tests.conftest import Stack
from tests.e2e.browser import csp_violations, record_csp_violations
from tests.support import TEST_OPS_TOKEN, auth


def test_dashboard_follows_a_job_live_under_the_csp(site: Stack, page: Page,
                                                    paused_worker: Callable[[], None]) -> None:
    record_csp_violations(page)
    page.goto(site.url + "/dashboard")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    expect(page.locator("#worker-count")).to_have_text("0")  # the worker is paused
    expect(page.locator("#queue-depth")).to_have_text("0")

    job_id = site.start_job()
    row = page.locator(f'#job-rows tr[data-job-id="{job_id}"]')
    expect(row).to_have_attribute("data-state", "queued")  # inserted by jobChanged
    expect(row.locator("td.state")).to_have_text("queued")
    expect(page.locator("#queue-depth")).to_have_text("1")  # the stats refresh

    operator = auth(TEST_OPS_TOKEN)  # an operator acts on someone's job
    cancel = requests.post(f"{site.url}/api/jobs/{job_id}/cancel", headers=operator, timeout=5)
    assert cancel.status_code == 200, cancel.text
    expect(row).to_have_attribute("data-state", "cancelled")
    expect(row.locator("td.state")).to_have_text("cancelled")
    expect(page.locator("#queue-depth")).to_have_text("0")

    retry = requests.post(f"{site.url}/api/jobs/{job_id}/retry", headers=operator, timeout=5)
    assert retry.status_code == 202, retry.text
    expect(row).to_have_attribute("data-state", "queued")
    expect(page.locator("#queue-depth")).to_have_text("1")

    paused_worker()  # start it again: the job runs to its end on the page
    expect(row).to_have_attribute("data-state", "succeeded")
    expect(row.locator("td.progress span")).to_have_text("100%")
    expect(page.locator("#worker-count")).to_have_text("1")
    expect(page.locator("#queue-depth")).to_have_text("0")
    assert page.evaluate("window.__sameDocument") is True
    assert page.locator("#job-rows tr[data-job-id]").count() == 1
    assert csp_violations(page) == []
