"""A queued job's place in line on its page, in a real Chromium against a real stack:
"3rd in line", then "1st in line" as the jobs ahead run, "Paused by an operator" while
its kind is paused; axe clean in light and dark, at 390 px (issue #27, section 7)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.conftest import Stack
from tests.e2e.a11y import PHONE, assert_no_serious_axe_violations, page_width
from tests.queue_flow import OPS, hold_worker, open_gate, post, queue_stack, wait_state


@pytest.fixture(scope="module")
def site(browser: Any, log_dir: Path,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with queue_stack(log_dir, tmp_path_factory.mktemp("e2e-place-redis")) as running:
        yield running


def test_the_page_says_its_place_in_line_live(site: Stack,
                                              new_page: Callable[..., Page]) -> None:
    hold_worker(site, "e2e-1")
    ahead = post(site, "quick", "e2e", 1)["id"]
    second_gate = post(site, "gate", "e2e-2")["id"]
    watched = post(site, "quick", "e2e", 2)["id"]
    page = new_page()
    page.set_viewport_size(PHONE)
    page.goto(f"{site.url}/jobs/{watched}")
    place = page.locator("#queue-place")
    expect(place).to_have_text("3rd in line.")  # no duration of "quick" yet: no eta
    for scheme in ("light", "dark"):
        assert_no_serious_axe_violations(page, scheme)
    assert page_width(page) <= PHONE["width"]
    open_gate(site, "e2e-1")  # the job ahead runs, the second gate holds the worker
    wait_state(site, ahead, "succeeded")
    wait_state(site, second_gate, "running")
    expect(place).to_have_text("1st in line, about 1 s.")  # pushed: "quick" has run once
    assert requests.post(f"{site.url}/api/kinds/quick/pause", headers=OPS,
                         timeout=10).status_code == 200
    expect(place).to_have_text("Paused by an operator: it waits until its kind is resumed.")
    assert_no_serious_axe_violations(page, "dark")
    assert requests.post(f"{site.url}/api/kinds/quick/resume", headers=OPS,
                         timeout=10).status_code == 200
    open_gate(site, "e2e-2")
    expect(page.locator("#state")).to_have_text("succeeded")
    expect(place).to_be_hidden()
