"""Debian's Chromium driven by Playwright: how to find it and how to launch it.

Shared by the e2e fixtures and the screenshot script. Never ``playwright
install``: the tests use the system browser (``apt-get install chromium``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.sync_api import Browser, Playwright

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
