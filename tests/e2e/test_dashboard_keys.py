"""The dashboard's API keys panel in Chromium at 390 px, light and dark (axe-core, no
sideways scroll): create a key (shown once), see its jobs under its name (rendered and
added live), filter by it, revoke it (refused at once)."""

from __future__ import annotations

from collections.abc import Callable

import requests
from playwright.sync_api import Page, expect

from tests.conftest import Stack
from tests.e2e.a11y import PHONE, assert_no_serious_axe_violations, page_width
from tests.support import wait_until


def check(page: Page) -> None:
    width = page_width(page)
    assert width <= PHONE["width"], f"{page.url} is {width}px wide at {PHONE['width']}px"
    for scheme in ("light", "dark"):
        assert_no_serious_axe_violations(page, scheme)


def start(site: Stack, key: str) -> requests.Response:
    return requests.post(f"{site.url}/api/jobs", json={"args": {"steps": 2}}, timeout=10,
                         headers={"Authorization": f"Bearer {key}"})


def test_the_keys_panel_creates_shows_once_and_revokes(site: Stack,
                                                       new_page: Callable[..., Page]) -> None:
    page = new_page()
    page.set_viewport_size(PHONE)
    page.goto(site.url + "/dashboard#api-keys")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    panel = page.locator("#api-keys")
    panel.get_by_label("Name").fill("phone reports")
    panel.get_by_label("Jobs stored").fill("40")
    panel.get_by_label("Requests a minute").fill("20")
    check(page)
    panel.get_by_role("button", name="Create key").click()
    expect(page.locator("h1")).to_contain_text("phone reports")
    key = page.locator("#new-key").input_value()
    key_id = page.locator("#new-key-id").inner_text()
    assert key.startswith("jc_") and len(key) == 46
    check(page)
    first = start(site, key)
    assert first.status_code == 202 and first.json()["owner"] == f"k-{key_id}"
    wait_until(lambda: site.job_state(first.json()["id"])["state"] == "succeeded", timeout=30,
               what="the key's first job to end")
    # Back to a settled page (no snapshot on its way that predates the next job).
    page.get_by_role("link", name="Back to the dashboard").click()
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    assert key not in page.content()  # shown once
    key_row = page.locator(f'#keys tr[data-key-id="{key_id}"]')
    expect(key_row).to_contain_text("phone reports")
    expect(key_row).to_contain_text("jobs 40, rate 20")
    owner = page.locator(f'#job-rows tr[data-job-id="{first.json()["id"]}"] .owner a')
    expect(owner).to_have_text("phone reports")  # rendered by the server
    live = start(site, key).json()["id"]
    expect(page.locator(f'#job-rows tr[data-job-id="{live}"] .owner a')
           ).to_have_text("phone reports")  # added live, named from the page's key list
    check(page)
    page.goto(f"{site.url}/dashboard?owner=k-{key_id}")
    expect(page.locator("#owner-key-name")).to_have_text("key “phone reports”")
    expect(page.locator("#job-rows tr[data-job-id]")).to_have_count(2)
    check(page)
    key_row = page.locator(f'#keys tr[data-key-id="{key_id}"]')
    key_row.get_by_role("button", name="Revoke key phone reports").click()
    expect(page.locator(f'#keys tr[data-key-id="{key_id}"]')).to_have_attribute(
        "data-revoked", "1")
    expect(page.locator(f'#keys tr[data-key-id="{key_id}"]')).to_contain_text("revoked")
    refused = start(site, key)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]
    check(page)
