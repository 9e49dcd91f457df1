"""Helpers of the phone-width and accessibility checks: the viewport and axe-core."""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

PHONE = {"width": 390, "height": 844}
SERIOUS = ("serious", "critical")


def assert_no_serious_axe_violations(page: Page, scheme: str) -> None:
    """axe-core (shipped in axe-playwright-python, no download) over the whole page,
    with ``prefers-color-scheme`` emulated as ``scheme``."""
    page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
    assert page.evaluate("s => matchMedia(`(prefers-color-scheme: ${s})`).matches", scheme)
    violations = Axe().run(page).response["violations"]
    serious = [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
               for v in violations if v["impact"] in SERIOUS]
    assert serious == [], f"{scheme}: " + "; ".join(serious)


def page_width(page: Page) -> int:
    """The page's scroll width (more than the viewport: it scrolls sideways)."""
    return int(page.evaluate("document.scrollingElement.scrollWidth"))
