"""Debian's Chromium driven by Playwright: how to find it and how to launch it.

Shared by the e2e fixtures and the screenshot script. Never ``playwright
install``: the tests use the system browser (``apt-get install chromium``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
MISSING_REASON = ("Chromium not found (CHROMIUM_PATH, /usr/bin/chromium or `chromium` on PATH): "
                  "browser tests skipped (`make browser` installs it as root on Debian)")


def find_chromium() -> str | None:
    """Path of the system Chromium, or None when there is none.

    ``CHROMIUM_PATH`` in the environment names another binary (and only that one).
    """
    chosen = os.environ.get("CHROMIUM_PATH", "")
    if chosen:
        return chosen if os.path.isfile(chosen) and os.access(chosen, os.X_OK) else None
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return str(CHROMIUM)
    return shutil.which("chromium")


def browser_required() -> bool:
    """True when a missing browser must fail the run (CI sets REQUIRE_BROWSER=1)."""
    return os.environ.get("REQUIRE_BROWSER", "") == "1"


def launch(playwright: Playwright, executable: str) -> Browser:
    """Launch headless Chromium with the flags this project uses everywhere."""
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS,
                                      headless=True)


@contextmanager
def system_chromium(expect_timeout_ms: int) -> Iterator[Browser]:
    """Debian's Chromium under Playwright, for a test or fixture: skipped when there is
    none (failed with ``REQUIRE_BROWSER=1``); ``expect`` waits ``expect_timeout_ms``."""
    executable = find_chromium()
    if executable is None:
        if browser_required():
            pytest.fail(MISSING_REASON.replace("skipped", "required (REQUIRE_BROWSER=1)"),
                        pytrace=False)
        pytest.skip(MISSING_REASON)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=expect_timeout_ms)
    playwright = sync_playwright().start()
    try:
        chromium = launch(playwright, executable)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


# Records every CSP violation of the page into ``window.__cspViolations``; added
# with ``page.add_init_script``, it runs before the page's own scripts on every load.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline")
                              + " at " + e.sourceFile + ":" + e.lineNumber);
});
"""


def record_csp_violations(page: Page) -> None:
    """From the next navigation on, record the page's ``securitypolicyviolation`` events."""
    page.add_init_script(CSP_LISTENER)


def csp_violations(page: Page) -> list[str]:
    """The violations the current document reported so far (the list starts on each load)."""
    found: list[str] = page.evaluate("window.__cspViolations")
    return found
