"""The dashboard's overview in a real browser: the state tabs filter the list, the
chart of jobs finished (and its text equivalent) moves as jobs end, without the page
asking for a snapshot more than once every 5 s; axe in light and dark; 390 px."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.conftest import Stack, start_stack, stop_stack
from tests.e2e.a11y import PHONE, assert_no_serious_axe_violations, page_width
from tests.support import wait_until

GAP = 5.0  # seconds: the page's least time between two snapshots (REFRESH_SECONDS)
# Notes in the page when it asks for a snapshot (the browser's clock, in ms): an init
# script, which Playwright runs before the page's own (CSP does not apply to it).
ASKS = """window.overviewAsks = [];
const pageFetch = window.fetch;
window.fetch = function (input, init) {
  if (String(input).indexOf("/api/ops/overview") >= 0) { window.overviewAsks.push(performance.now()); }
  return pageFetch.call(this, input, init);
};"""


@pytest.fixture(scope="module")
def kinds_site(browser: Any, log_dir: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose kinds succeed (tidy) or fail (broken) at once."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("overview-e2e-redis"),
                          JOB_KINDS="tests.overview_kinds", RATE_LIMIT="0")
    yield running
    stop_stack(running)


def run(site: Stack, kind: str, count: int) -> list[str]:
    """Start ``count`` jobs of ``kind`` and wait for their ends; their ids."""
    ids = []
    for n in range(count):
        resp = requests.post(f"{site.url}/api/jobs", json={"kind": kind, "args": {"n": n}},
                             timeout=10)
        assert resp.status_code == 202, resp.text
        ids.append(str(resp.json()["id"]))
    wait_until(lambda: all(site.job_state(i)["state"] in ("succeeded", "failed") for i in ids),
               timeout=30, what=f"the {kind} jobs to end")
    return ids


@pytest.fixture(scope="module")
def ended(kinds_site: Stack) -> dict[str, list[str]]:
    return {"tidy": run(kinds_site, "tidy", 2), "broken": run(kinds_site, "broken", 1)}


def succeeded_in(summary: str) -> int:
    found = re.match(r"(\d+) succeeded", summary)
    assert found, summary
    return int(found.group(1))


def test_the_state_tabs_filter_the_list(kinds_site: Stack, page: Page,
                                        ended: dict[str, list[str]]) -> None:
    page.goto(kinds_site.url + "/dashboard")
    tab = page.locator('.state-tabs a[data-state="failed"]')
    expect(tab.locator(".count")).to_have_text(re.compile(r"[1-9]\d*"))
    tab.click()
    expect(page).to_have_url(re.compile(r"/dashboard\?state=failed$"))
    expect(page.locator('.state-tabs a[aria-current="page"]')).to_have_attribute(
        "data-state", "failed")
    rows = page.locator("#job-rows tr[data-job-id]")
    expect(rows.first).to_be_visible()
    assert set(rows.evaluate_all("rs => rs.map(r => r.dataset.state)")) == {"failed"}
    expect(page.locator(f'#job-rows tr[data-job-id="{ended["broken"][0]}"]')).to_be_visible()
    page.locator('.state-tabs a[data-state=""]').click()
    expect(page).to_have_url(re.compile(r"/dashboard$"))
    expect(page.locator(f'#job-rows tr[data-job-id="{ended["tidy"][0]}"]')).to_be_visible()
    row = page.locator('#kind-rows tr[data-kind="broken"]')
    expect(row.locator("td.failed")).to_have_text("1")
    expect(row.locator("td.failure-rate")).to_have_text("100.0%")
    expect(row.locator("td.last-failure a")).to_contain_text("broken on purpose")


def test_the_chart_and_its_text_update_live(kinds_site: Stack, page: Page,
                                            ended: dict[str, list[str]]) -> None:
    page.add_init_script(ASKS)
    page.goto(kinds_site.url + "/dashboard")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    expect(page.locator("#finished-plot canvas")).to_have_count(1)  # uPlot drew it
    before = succeeded_in(page.locator("#finished-summary").inner_text())
    table_before = page.locator("#history-rows tr").count()
    assert table_before >= 1
    run(kinds_site, "tidy", 1)  # counted at once, from its jobChanged
    expect(page.locator("#finished-summary")).to_contain_text(f"{before + 1} succeeded")
    done = 1
    until = time.monotonic() + 11  # ends for 11 s: a stream of jobChanged events
    while time.monotonic() < until:
        done += len(run(kinds_site, "tidy", 1))
    expect(page.locator("#finished-summary")).to_contain_text(f"{before + done} succeeded")
    cells = page.locator("#history-rows tr td[data-label='Succeeded']")
    wait_until(lambda: sum(int(t) for t in cells.evaluate_all("cs => cs.map(c => c.textContent)"))
               == before + done, timeout=20, what="the chart's table to count the new ends")
    expect(page.locator('#kind-rows tr[data-kind="tidy"] td.succeeded')).to_have_text(
        str(before + done))
    # the page's numbers come to agree with a fresh snapshot (asked for, not only counted)
    def asked() -> list[float]:
        return list(page.evaluate("window.overviewAsks"))

    wait_until(lambda: len(asked()) >= 2, timeout=20, what="snapshots to be asked for")
    times = asked()  # a stream of changes, yet one snapshot per GAP at most
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert all(g >= GAP * 1000 - 50 for g in gaps), gaps
    page.locator('.window-switch button[data-window="24h"]').click()
    expect(page.locator("#finished-title .bucket-name")).to_have_text("15 minutes")
    expect(page.locator("#finished-summary")).to_contain_text("in the last 24 hours")


def test_the_overview_passes_axe_and_fits_a_phone(kinds_site: Stack,
                                                   new_page: Callable[..., Page],
                                                   ended: dict[str, list[str]]) -> None:
    page = new_page()
    page.set_viewport_size(PHONE)
    page.goto(kinds_site.url + "/dashboard")
    expect(page.locator("#depth-plot canvas")).to_have_count(1)
    page.locator("#history-data summary").click()
    expect(page.locator("#history-table")).to_be_visible()
    width = page_width(page)
    assert width <= PHONE["width"], f"the page is {width}px wide at {PHONE['width']}px"
    for scheme in ("light", "dark"):
        assert_no_serious_axe_violations(page, scheme)
    page.set_viewport_size({"width": 1200, "height": 800})  # type: ignore[arg-type]
    expect(page.locator("#finished-plot canvas")).to_have_count(1)
    assert_no_serious_axe_violations(page, "dark")
