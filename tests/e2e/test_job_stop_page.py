"""The job page says "Stopping…" once a running job was asked to stop, and "Stalled: no
report for …" while it sends none (#27 sections 8 and 9): pushed live, and on a
reload; at 390 px, light and dark, with axe-core clean."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.conftest import Stack, start_stack, stop_stack
from tests.e2e.a11y import PHONE, assert_no_serious_axe_violations, page_width
from tests.support import TEST_WORKER_TOKEN, Process, auth, start_worker, wait_until


@pytest.fixture(scope="module")
def stop_site(browser: Any, log_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The test kinds, a long grace (the page has time to show "Stopping…"), a second
    worker (each scheme's job keeps one busy for the grace) and the tick process."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("e2e-stop"),
                          JOB_KINDS="tests.flow_stop_kinds", CANCEL_GRACE="30", RATE_LIMIT="0")
    second = start_worker(running.env, log_dir, name="worker-e2e-stop")
    ticking = Process("cron-e2e-stop", [sys.executable, "-m", "worker.cron", "--interval",
                                        "0.2"], running.env, log_dir).start()
    yield running
    ticking.stop()
    second.stop()
    stop_stack(running)


def start(site: Stack, kind: str) -> tuple[str, str]:
    resp = requests.post(f"{site.url}/api/jobs", json={"kind": kind, "args": {}}, timeout=5)
    assert resp.status_code == 202, resp.text
    return resp.json()["id"], resp.json()["controlToken"]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_stopping_is_shown_live_and_after_a_reload(stop_site: Stack,
                                                   new_page: Callable[..., Page],
                                                   scheme: str) -> None:
    job_id, token = start(stop_site, "ignores_cancel")
    wait_until(lambda: stop_site.job_state(job_id)["state"] == "running", timeout=20,
               what="the job running")
    page = new_page(color_scheme=scheme)
    page.set_viewport_size(PHONE)
    page.goto(f"{stop_site.url}/jobs/{job_id}")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    expect(page.locator("#stop-line")).to_be_hidden()
    resp = requests.post(f"{stop_site.url}/api/jobs/{job_id}/cancel", headers=auth(token),
                         timeout=5)
    assert resp.status_code == 200, resp.text
    stopping = page.locator("#stop-line")
    expect(stopping).to_be_visible()
    expect(stopping).to_contain_text("Stopping… the worker was asked to stop")
    expect(stopping).to_contain_text("stopped by force")
    expect(page.locator("#state")).to_have_text("running")
    assert page_width(page) <= PHONE["width"]
    assert_no_serious_axe_violations(page, scheme)
    page.reload()
    expect(page.locator("#stop-line")).to_be_visible()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_stall_is_shown_with_the_time_since_the_last_report(stop_site: Stack,
                                                               new_page: Callable[..., Page],
                                                               scheme: str) -> None:
    job_id, _token = start(stop_site, "stalls")
    claimed = requests.post(f"{stop_site.url}/api/workers/claim", timeout=10,
                            headers=auth(TEST_WORKER_TOKEN),
                            json={"kinds": ["stalls"], "worker": "e2e", "wait": 5}).json()
    assert claimed["jobId"] == job_id
    page = new_page(color_scheme=scheme)
    page.set_viewport_size(PHONE)
    page.goto(f"{stop_site.url}/jobs/{job_id}")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    stall = page.locator("#stall-line")
    expect(stall).to_be_visible()  # a second without a report (the kind's stall_after)
    expect(stall).to_contain_text("Stalled: no report for")
    expect(page.locator("#stall-for")).to_have_text("3s", timeout=10_000)  # it counts on
    assert page_width(page) <= PHONE["width"]
    assert_no_serious_axe_violations(page, scheme)
    report = requests.post(f"{stop_site.url}/api/progress", headers=auth(claimed["token"]),
                           json={"jobId": job_id, "state": "running", "progress": 50},
                           timeout=5)
    assert report.status_code == 204
    expect(stall).to_be_hidden()
