"""Act where you look (#28), in a browser: Cancel and Retry on the operators' job page,
"run again with changes" end to end (the owner and an operator), and a bulk action on
the filtered dashboard; every page 390 px wide with RQ's 32-hex worker names, and axe
finds nothing serious in light or dark."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.conftest import Stack
from tests.e2e.a11y import PHONE, assert_no_serious_axe_violations, page_width
from tests.support import TEST_OPS_TOKEN, auth, start_worker, wait_until

OPS = auth(TEST_OPS_TOKEN)


@pytest.fixture(scope="module")
def hex_worker(site: Stack) -> Iterator[str]:
    """The stack's worker replaced by one with RQ's default kind of name (32 hex digits)."""
    name = uuid.uuid4().hex
    site.worker.stop()
    site.worker = start_worker(site.env, site.log_dir, name=name)
    yield name


def phone_page(new_page: Callable[..., Page]) -> Page:
    page = new_page()
    page.set_viewport_size(PHONE)
    return page


def check(page: Page) -> None:
    """No sideways scroll at 390 px, and axe clean in light and dark."""
    width = page_width(page)
    assert width <= PHONE["width"], f"{page.url} is {width}px wide at {PHONE['width']}px"
    for scheme in ("light", "dark"):
        assert_no_serious_axe_violations(page, scheme)


def reload_until(page: Page, selector: str, what: str) -> None:
    """Reload the (server-rendered) page until ``selector`` is on it."""
    def there() -> bool:
        page.reload()
        return page.locator(selector).count() > 0
    wait_until(there, timeout=30, interval=0.3, what=what)


def test_cancel_and_retry_from_the_operators_page(site: Stack, new_page: Callable[..., Page],
                                                  hex_worker: str) -> None:
    job_id = requests.post(f"{site.url}/api/jobs", json={"args": {"steps": 40}},
                           timeout=5).json()["id"]  # 12 s at 0.3 s a step
    wait_until(lambda: site.job_state(job_id)["state"] == "running", timeout=30,
               what="the job to run")
    page = phone_page(new_page)
    url = f"{site.url}/dashboard/jobs/{job_id}"
    page.goto(url)
    expect(page.locator("#detail-retry")).to_have_count(0)
    page.click("#detail-cancel button")
    expect(page).to_have_url(url)
    # Asked to stop ("Stopping…", in words) until the worker stops, then cancelled.
    expect(page.locator("#detail-stop").or_(page.locator("#detail-retry"))).to_be_visible()
    reload_until(page, "#detail-retry", "the job to be cancelled")
    expect(page.locator("#detail-state")).to_contain_text("cancelled")
    worker = page.locator("#detail-attempts .worker").first
    expect(worker).to_have_text(hex_worker[:8])
    expect(worker).to_have_attribute("title", hex_worker)
    assert hex_worker not in page.locator("main").inner_text()
    check(page)
    page.click("#detail-retry button")
    expect(page).to_have_url(url)
    expect(page.locator("#detail-state")).not_to_contain_text("cancelled")
    expect(page.locator("#detail-cancel")).to_be_visible()  # queued or running again
    reload_until(page, "#detail-attempts tbody tr:nth-child(2)", "the second attempt")
    check(page)
    requests.post(f"{site.url}/api/jobs/{job_id}/cancel", headers=OPS, timeout=5)


def test_run_again_with_changes_end_to_end(site: Stack, new_page: Callable[..., Page],
                                           hex_worker: str) -> None:
    owner = phone_page(new_page)
    owner.goto(site.url + "/")
    owner.fill("#f-demo-steps", "2")
    owner.locator("#kind-demo button[type=submit]").click()
    expect(owner.locator("#state")).to_have_text("succeeded")
    old = owner.url.rsplit("/", 1)[-1]
    owner.click("#rerun-link")
    expect(owner).to_have_url(f"{site.url}/jobs/{old}/rerun")
    expect(owner.locator("#f-demo-steps")).to_have_value("2")
    check(owner)
    owner.fill("#f-demo-steps", "3")
    owner.locator("#kind-demo button[type=submit]").click()
    expect(owner).not_to_have_url(re.compile(f"{old}|rerun"))
    new = owner.url.rsplit("/", 1)[-1]
    expect(owner.locator("#rerun-of a")).to_have_attribute("href", f"/jobs/{old}")
    expect(owner.locator("#state")).to_have_text("succeeded")
    expect(owner.locator("#result")).to_contain_text('"steps": 3')
    check(owner)
    owner.click("#rerun-of a")
    expect(owner.locator("#reruns a")).to_have_attribute("href", f"/jobs/{new}")

    operator = phone_page(new_page)
    operator.goto(f"{site.url}/dashboard/jobs/{old}")
    expect(operator.locator("#reruns a")).to_have_attribute("href", f"/dashboard/jobs/{new}")
    check(operator)
    operator.click("#rerun-link")
    expect(operator.locator("#f-demo-steps")).to_have_value("2")
    operator.fill("#f-demo-steps", "4")
    operator.locator("#kind-demo button[type=submit]").click()
    expect(operator.locator("#rerun-of a")).to_have_attribute("href", f"/dashboard/jobs/{old}")
    expect(operator.locator("#detail-args")).to_contain_text('"steps": 4')
    check(operator)


def test_a_bulk_cancel_from_the_filtered_dashboard(site: Stack,
                                                   new_page: Callable[..., Page]) -> None:
    def scheduled(owner: str) -> str:
        resp = requests.post(f"{site.url}/api/jobs", headers=OPS, timeout=5, json={
            "args": {"steps": 1}, "delaySeconds": 600, "owner": owner})
        return str(resp.json()["id"])

    mine = [scheduled("bulk-e2e") for _ in range(3)]
    other = scheduled("bulk-e2e-other")
    page = phone_page(new_page)
    page.goto(f"{site.url}/dashboard?state=scheduled&owner=bulk-e2e")
    expect(page.locator("#job-rows tr[data-job-id]")).to_have_count(3)
    page.click("#bulk-cancel")
    expect(page.locator("#bulk-count")).to_contain_text("3 jobs match now")
    page.click("#bulk-form button")
    bulk = page.url.rsplit("/", 1)[-1]
    wait_until(lambda: site.job_state(bulk)["state"] == "succeeded", timeout=30,
               what="the bulk job to finish")
    assert {site.job_state(job_id)["state"] for job_id in mine} == {"cancelled"}
    assert site.job_state(other)["state"] == "scheduled"  # outside the filter
