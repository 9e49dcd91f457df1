"""The dashboard on a phone (390 px wide): no sideways scroll, one-line ages,
short worker names, and axe-core finds nothing serious in light or dark."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import Stack
from tests.e2e.a11y import PHONE, assert_no_serious_axe_violations, page_width
from tests.support import start_worker, wait_until

# For every row: how many line boxes the Age text takes, and the cell's height
# against its line height (a wrapped "12m 05s" gives 2 boxes and twice the height).
AGE_LINES = """() => Array.from(document.querySelectorAll('#job-rows tr[data-job-id] td.age'))
  .map(td => {
    const range = document.createRange();
    range.selectNodeContents(td);
    const style = getComputedStyle(td);
    const line = parseFloat(style.lineHeight);
    const text = range.getBoundingClientRect();
    return {text: td.textContent, boxes: range.getClientRects().length,
            height: text.height, line: line};
  })"""


@pytest.fixture(scope="module")
def hex_worker(site: Stack) -> Iterator[str]:
    """The stack's worker replaced by one with RQ's default kind of name (32 hex digits)."""
    name = uuid.uuid4().hex
    site.worker.stop()
    site.worker = start_worker(site.env, site.log_dir, name=name)
    yield name


@pytest.fixture(scope="module")
def finished_jobs(site: Stack, hex_worker: str) -> list[str]:
    """Two demo jobs run to the end by the hex-named worker."""
    ids = [site.start_job() for _ in range(2)]
    for job_id in ids:
        wait_until(lambda job_id=job_id: site.job_state(job_id)["state"] == "succeeded",
                   timeout=30, what=f"job {job_id} to succeed")
    return ids


def phone_page(new_page: Callable[..., Page], **options: Any) -> Page:
    """A page 390 px wide."""
    page = new_page(**options)
    page.set_viewport_size(PHONE)
    return page


def assert_fits_a_phone(page: Page) -> None:
    """No sideways scroll, and each Age on one line."""
    width = page_width(page)
    assert width <= PHONE["width"], f"the page is {width}px wide at {PHONE['width']}px"
    ages = page.evaluate(AGE_LINES)
    assert ages, "no job rows"
    for age in ages:
        assert age["boxes"] == 1 and age["height"] < 1.5 * age["line"], age


def test_dashboard_fits_a_phone_and_shows_short_worker_names(
        site: Stack, new_page: Callable[..., Page], hex_worker: str,
        finished_jobs: list[str]) -> None:
    page = phone_page(new_page)
    page.goto(site.url + "/dashboard")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    row = page.locator(f'#job-rows tr[data-job-id="{finished_jobs[0]}"]')
    expect(row.locator("td.state")).to_have_text("succeeded")
    name = row.locator("td.worker span")  # rendered by dashboard.js from the snapshot
    expect(name).to_have_text(hex_worker[:8])
    expect(name).to_have_attribute("title", hex_worker)
    listed = page.locator("#workers .worker-name", has_text=hex_worker[:8])
    expect(listed).to_have_attribute("title", hex_worker)
    assert hex_worker not in page.locator("main").inner_text()
    assert_fits_a_phone(page)

    live = site.start_job()  # a row that dashboard.js inserts as the job is created
    live_row = page.locator(f'#job-rows tr[data-job-id="{live}"]')
    expect(live_row.locator("td.state")).to_have_text("succeeded")
    expect(live_row.locator("td.age")).to_have_attribute("data-label", "Age")
    assert_fits_a_phone(page)

    for scheme in ("light", "dark"):
        assert_no_serious_axe_violations(page, scheme)


def test_server_rendered_dashboard_fits_a_phone_without_javascript(
        site: Stack, new_page: Callable[..., Page], hex_worker: str,
        finished_jobs: list[str]) -> None:
    page = phone_page(new_page, java_script_enabled=False)
    page.goto(site.url + "/dashboard")
    row = page.locator(f'#job-rows tr[data-job-id="{finished_jobs[1]}"]')
    expect(row.locator("td.worker span")).to_have_text(hex_worker[:8])
    expect(row.locator("td.worker span")).to_have_attribute("title", hex_worker)
    assert_fits_a_phone(page)  # (axe needs scripts: it ran on the same markup above)


def test_wide_dashboard_keeps_the_table(site: Stack, page: Page,
                                        finished_jobs: list[str]) -> None:
    page.goto(site.url + "/dashboard")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    assert page.locator("#jobs thead").is_visible()
    assert page.evaluate("getComputedStyle(document.querySelector('#job-rows tr')).display") \
        == "table-row"
    assert page.evaluate(AGE_LINES)[0]["boxes"] == 1
    assert_no_serious_axe_violations(page, "dark")
