"""Every page at 390 px wide, light and dark: no sideways scroll, and axe-core
finds no serious or critical violation. (The dashboard has its own, deeper test.)"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.conftest import Stack
from tests.e2e.a11y import PHONE, assert_no_serious_axe_violations, page_width
from tests.support import wait_until

LONG_LINE = "total = " + " + ".join(f"value_{n}" for n in range(40)) + "\n"


@pytest.fixture(scope="module")
def pages(site: Stack) -> list[str]:
    """Paths of one of each page, with a finished job and a highlighted long-lined snippet."""
    job = site.start_job()
    snippet = requests.post(site.url + "/api/snippets", timeout=5,
                            json={"source": "import os\n" + LONG_LINE, "language": "auto"}).json()
    wait_until(lambda: site.job_state(job)["state"] == "succeeded", timeout=30,
               what="the demo job")
    wait_until(lambda: requests.get(site.url + snippet["statusUrl"], timeout=5)
               .json()["highlighted"], timeout=30, what="the highlight")
    return ["/", "/snippets", snippet["url"], f"/jobs/{job}", "/jobs/no-such-job"]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_fit_a_phone_and_pass_axe(site: Stack, new_page: Callable[..., Page],
                                        pages: list[str], scheme: str) -> None:
    page = new_page(color_scheme=scheme)
    page.set_viewport_size(PHONE)
    for path in pages:
        page.goto(site.url + path)
        expect(page.locator("main h1")).to_be_visible()
        width = page_width(page)
        assert width <= PHONE["width"], f"{path} is {width}px wide"
        assert_no_serious_axe_violations(page, scheme)
