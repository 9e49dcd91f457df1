"""Screenshots for the README, taken from the real stack: ``python -m tests.e2e.screenshots``.

Starts Redis, the site and a worker on free ports (the test helpers), drives
Debian's Chromium and writes ``docs/job-page.png`` (a job mid-progress),
``docs/snippet.png`` (a highlighted snippet) and ``docs/dashboard.png`` (the
dashboard's overview, after an hour of jobs written through the store with past
times, as tests/test_overview.py does, and a few run now by the worker).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

import redis
from playwright.sync_api import Browser, Page, sync_playwright

from shared.protocol import FAILED, RUNNING, SUCCEEDED, ProgressUpdate
from shared.store import JobStore
from tests.conftest import Stack, start_stack, stop_stack
from tests.e2e.browser import MISSING_REASON, find_chromium, launch
from tests.support import ROOT, TEST_OPS_TOKEN, wait_until

log = logging.getLogger("screenshots")
VIEWPORT = {"width": 900, "height": 440}
SNIPPET_VIEWPORT = {"width": 900, "height": 560}
DASHBOARD_VIEWPORT = {"width": 1100, "height": 900}


def job_page(page: Page, site: Stack, out: Path) -> Path:
    """Start a job with the button and capture its page while it runs."""
    page.goto(site.url + "/")
    page.get_by_role("button", name="Start a new job").click()
    # (not page.wait_for_function: the site's CSP forbids the eval it polls with)
    wait_until(lambda: 40 <= int(page.locator("#progress-span").text_content() or 0) <= 70
               and page.locator("#connection").get_attribute("data-status") == "live",
               timeout=30, interval=0.05, what="job page at 40-70% and live")
    path = out / "job-page.png"
    page.screenshot(path=str(path))
    return path


SNIPPET_SOURCE = '''from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """One step of a background job."""

    job_id: str
    percent: int = 0

    def done(self) -> bool:
        return self.percent >= 100
'''


def snippet_page(page: Page, site: Stack, out: Path) -> Path:
    """Submit a snippet with the form and capture it once highlighted."""
    page.goto(site.url + "/snippets")
    page.get_by_label("Source").fill(SNIPPET_SOURCE)
    page.get_by_label("Language").select_option("python")
    page.get_by_role("button", name="Highlight").click()
    page.locator("#code .highlight").wait_for(timeout=30_000)
    path = out / "snippet.png"
    page.screenshot(path=str(path))
    return path


def past_hour(site: Stack) -> None:
    """An hour of ended jobs (a failure burst 20 minutes ago), through the store."""
    store = JobStore(redis.Redis.from_url(site.env["REDIS_URL"], decode_responses=True))
    rng = random.Random(28)
    now = time.time()
    for i in range(900):
        ago = rng.uniform(60, 3600)
        kind = rng.choice(("demo", "demo", "csv_import", "external"))
        burst = 1100 < ago < 1500 and kind == "csv_import"
        end = FAILED if burst or rng.random() < 0.03 else SUCCEEDED
        took = rng.lognormvariate(0.5 if kind == "demo" else -1.5, 0.6)
        job_id = f"shot{i:04d}"
        store.create(job_id, kind=kind)
        store.apply(ProgressUpdate(job_id=job_id, state=RUNNING, progress=1),
                    now=now - ago - took)
        store.apply(ProgressUpdate(job_id=job_id, state=end, progress=100 if end == SUCCEEDED
                                   else 40, retry=False,
                                   message="row 12: not a number" if end == FAILED else ""),
                    now=now - ago)


def dashboard_page(browser: Browser, site: Stack, out: Path) -> Path:
    """The dashboard's overview once a few jobs have run after the seeded hour."""
    past_hour(site)
    for _ in range(3):
        site.start_job()
    context = browser.new_context(viewport=DASHBOARD_VIEWPORT,  # type: ignore[arg-type]
                                  http_credentials={"username": "operator",
                                                    "password": TEST_OPS_TOKEN})
    page = context.new_page()
    page.goto(site.url + "/dashboard")
    page.locator("#finished-plot canvas").wait_for(timeout=30_000)
    wait_until(lambda: page.locator("#connection").get_attribute("data-status") == "live",
               timeout=30, what="the dashboard live")
    path = out / "dashboard.png"
    page.locator("#overview").screenshot(path=str(path))
    context.close()
    return path


def main(argv: list[str] | None = None) -> int:
    """Take the screenshots; 1 when Chromium is missing."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    executable = find_chromium()
    if executable is None:
        log.error("%s", MISSING_REASON.replace("browser tests skipped", "no screenshots"))
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="jobcast-shots-") as tmp:
        site = start_stack(Path(tmp), Path(tmp) / "redis", DEMO_STEP_DELAY="1.0")
        try:
            with sync_playwright() as playwright:
                browser = launch(playwright, executable)
                page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
                log.info("wrote %s", job_page(page, site, args.out))
                page.set_viewport_size(SNIPPET_VIEWPORT)
                log.info("wrote %s", snippet_page(page, site, args.out))
                log.info("wrote %s", dashboard_page(browser, site, args.out))
                browser.close()
        finally:
            stop_stack(site)
    return 0


if __name__ == "__main__":
    sys.exit(main())
