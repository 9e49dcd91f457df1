"""Screenshots for the README, taken from the real stack: ``python -m tests.e2e.screenshots``.

Starts Redis, the site and a worker on free ports (the test helpers), drives
Debian's Chromium and writes ``docs/job-page.png`` (a job mid-progress) and
``docs/snippet.png`` (a highlighted snippet).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from tests.conftest import Stack, start_stack, stop_stack
from tests.e2e.browser import MISSING_REASON, find_chromium, launch
from tests.support import ROOT

log = logging.getLogger("screenshots")
VIEWPORT = {"width": 900, "height": 440}
SNIPPET_VIEWPORT = {"width": 900, "height": 560}


def job_page(page: Page, site: Stack, out: Path) -> Path:
    """Start a job with the button and capture its page while it runs."""
    page.goto(site.url + "/")
    page.get_by_role("button", name="Start a new job").click()
    page.wait_for_function(
        "(v => v >= 40 && v <= 70)(Number(document.getElementById('progress-span').textContent))"
        " && document.getElementById('connection').dataset.status === 'live'",
        timeout=30_000, polling=50)
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
                browser.close()
        finally:
            stop_stack(site)
    return 0


if __name__ == "__main__":
    sys.exit(main())
