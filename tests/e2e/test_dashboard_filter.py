"""The dashboard's filter, live: a job entering the filter gets a row, one leaving
it loses its row, without a reload (real stack, real Chromium)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from playwright.sync_api import Page, expect

from tests.conftest import Stack
from tests.e2e.a11y import assert_no_serious_axe_violations
from tests.support import wait_until


def open_live(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    page.evaluate("window.notReloaded = true")


def row(page: Page, job_id: str) -> Any:
    return page.locator(f'#job-rows tr[data-job-id="{job_id}"]')


def test_rows_enter_and_leave_the_filter_live(site: Stack, new_page: Any) -> None:
    running, succeeded, other_kind = new_page(), new_page(), new_page()
    open_live(running, site.url + "/dashboard?state=running")
    open_live(succeeded, site.url + "/dashboard?state=succeeded&kind=demo")
    open_live(other_kind, site.url + "/dashboard?kind=csv_import")
    expect(running.locator("#job-filter select[name=state]")).to_have_value("running")
    job_id = site.start_job()
    expect(row(running, job_id)).to_have_count(1)  # entered "running"
    expect(row(running, job_id)).to_have_attribute("data-state", "running")
    expect(row(succeeded, job_id)).to_have_count(1)  # entered "succeeded" ...
    expect(row(running, job_id)).to_have_count(0)  # ... and left "running"
    assert site.job_state(job_id)["state"] == "succeeded"
    expect(row(succeeded, job_id)).to_have_attribute("data-state", "succeeded")
    assert row(other_kind, job_id).count() == 0  # never matched the kind
    for page in (running, succeeded, other_kind):
        assert page.evaluate("window.notReloaded") is True
    assert_no_serious_axe_violations(succeeded, "light")


def test_a_text_filter_follows_the_server(site: Stack, new_page: Any,
                                          paused_worker: Callable[[], None]) -> None:
    page = new_page()
    open_live(page, site.url + "/dashboard?q=NEEDLE")
    job_id = site.start_job()  # queued: no worker takes it
    assert site.report({"jobId": job_id, "state": "running", "progress": 5,
                        "message": "a needle here"}).status_code == 204
    expect(row(page, job_id)).to_have_count(1)  # its message came to match
    assert site.report({"jobId": job_id, "state": "running", "progress": 6,
                        "message": "moved on"}).status_code == 204
    expect(row(page, job_id)).to_have_count(0)  # ... and no longer does
    assert page.evaluate("window.notReloaded") is True
    assert site.report({"jobId": job_id, "state": "cancelled"}).status_code == 204


def test_the_owner_filter_is_live_and_rows_name_their_owner(site: Stack, new_page: Any) -> None:
    alice, bob = requests.Session(), requests.Session()  # two browser sessions' cookies

    def start(session: requests.Session) -> dict[str, Any]:
        resp = session.post(site.url + "/api/jobs", json={"kind": "demo"}, timeout=10)
        assert resp.status_code == 202
        return resp.json()  # type: ignore[no-any-return]

    first = start(alice)
    owner = first["owner"]
    page = new_page()
    open_live(page, site.url + f"/dashboard?owner={owner}")
    link = row(page, first["id"]).locator(".owner a")  # rendered by the server
    expect(link).to_have_text(owner)
    expect(link).to_have_attribute("href", f"/dashboard?owner={owner}")
    second, other = start(alice), start(bob)
    assert other["owner"] != owner
    expect(row(page, second["id"]).locator(".owner a")).to_have_text(owner)  # added live
    wait_until(lambda: site.job_state(other["id"])["state"] == "succeeded", timeout=30,
               what="the other session's job to end")
    assert row(page, other["id"]).count() == 0  # never matched the owner
    assert page.evaluate("window.notReloaded") is True
    assert_no_serious_axe_violations(page, "dark")
