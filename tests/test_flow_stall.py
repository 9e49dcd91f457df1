"""#27 section 9, stalled jobs; on real processes (Redis, gunicorn, an RQ worker, the
tick process) with kinds whose ``stall_after`` is 1 s (tests/flow_stop_kinds.py).

A running job that sends no report for its ``stall_after`` shows ``stalled`` with
``lastReportAt``, even while its heartbeats keep its lease; ``/metrics`` counts it
and the finder's ``stalled=1`` lists it; its next report clears it. A kind with
``stall_fails=True`` has the stalled attempt failed (its lease revoked).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Stack, start_stack, stop_stack
from tests.queue_flow import beat, claimed
from tests.support import TEST_OPS_TOKEN, EventRecorder, Process, auth, wait_until


@pytest.fixture(scope="module")
def site(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with the quickly stalling kinds and the tick process that finds stalls."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("flow-stall"),
                          JOB_KINDS="tests.flow_stop_kinds", RATE_LIMIT="0")
    ticking = Process("cron-stall", [sys.executable, "-m", "worker.cron", "--interval", "0.2"],
                      running.env, log_dir).start()
    yield running
    ticking.stop()
    stop_stack(running)


def start(site: Stack, kind: str) -> str:
    resp = requests.post(f"{site.url}/api/jobs", json={"kind": kind, "args": {}}, timeout=5)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def report(site: Stack, job_id: str, token: str, progress: int) -> requests.Response:
    return requests.post(f"{site.url}/api/progress", headers=auth(token), timeout=5,
                         json={"jobId": job_id, "state": "running", "progress": progress})


def stalled_metric(site: Stack) -> float:
    text = requests.get(f"{site.url}/metrics", headers=auth(TEST_OPS_TOKEN), timeout=5).text
    found = re.search(r"^jobcast_jobs_stalled ([0-9.e+]+)$", text, re.M)
    assert found, text[:2000]
    return float(found.group(1))


def found_stalled(site: Stack) -> list[str]:
    resp = requests.get(f"{site.url}/api/jobs?stalled=1", headers=auth(TEST_OPS_TOKEN),
                        timeout=5)
    assert resp.status_code == 200, resp.text
    return [row["jobId"] for row in resp.json()["jobs"]]


def test_a_job_with_heartbeats_but_no_reports_stalls_and_its_next_report_clears_it(
        site: Stack) -> None:
    job_id = start(site, "stalls")
    job = claimed(site, "stalls")
    reported = time.time()
    assert report(site, job_id, job["token"], 10).status_code == 204
    rec = EventRecorder(site.url, job_id)
    try:
        def beating_and_stalled() -> bool:  # heartbeats keep coming: they are no report
            assert beat(site, job_id)["held"] is True
            return site.job_state(job_id).get("stalled") is True
        wait_until(beating_and_stalled, timeout=10, interval=0.3, what="the job stalled")
        rec.wait_for(lambda events: any(name == "updateProgress" and data.get("stalled")
                                        for name, data in events), what="the stall pushed")
    finally:
        rec.close()
    state = site.job_state(job_id)
    assert state["state"] == "running"
    last = datetime.fromisoformat(state["lastReportAt"].replace("Z", "+00:00")).timestamp()
    assert abs(last - reported) < 1.0
    assert stalled_metric(site) == 1
    assert found_stalled(site) == [job_id]
    page = requests.get(f"{site.url}/dashboard?stalled=1", headers=auth(TEST_OPS_TOKEN),
                        timeout=5)
    assert page.status_code == 200 and job_id in page.text
    assert report(site, job_id, job["token"], 20).status_code == 204  # a sign of life
    state = site.job_state(job_id)
    assert "stalled" not in state and "lastReportAt" not in state
    assert stalled_metric(site) == 0 and found_stalled(site) == []
    assert requests.post(f"{site.url}/api/progress", headers=auth(job["token"]), timeout=5,
                         json={"jobId": job_id, "state": "succeeded"}).status_code == 204


def test_an_rq_job_silent_past_its_stall_after_shows_stalled_until_it_reports(
        site: Stack) -> None:
    job_id = start(site, "quiet_rq")
    wait_until(lambda: site.job_state(job_id).get("stalled") is True, timeout=15,
               what="the RQ job stalled")
    wait_until(lambda: site.job_state(job_id)["state"] == "succeeded", timeout=15,
               what="the job to end")
    assert "stalled" not in site.job_state(job_id)
    assert stalled_metric(site) == 0


def test_a_kind_with_stall_fails_has_the_stalled_attempt_failed(site: Stack) -> None:
    job_id = start(site, "stall_fails")
    job = claimed(site, "stall_fails")
    assert report(site, job_id, job["token"], 10).status_code == 204

    def failed() -> dict[str, Any] | None:
        beat(site, job_id)
        state = site.job_state(job_id)
        return state if state["state"] == "failed" else None
    state = wait_until(failed, timeout=10, interval=0.3, what="the stalled attempt failed")
    assert re.fullmatch(r"stalled: no report for [0-9]+ s; the attempt failed "
                        r"\(its kind fails stalled attempts\)", state["message"]), state
    late = report(site, job_id, job["token"], 50)
    assert late.status_code == 409  # its lease was revoked
    assert beat(site, job_id)["held"] is False
    assert stalled_metric(site) == 0


@pytest.mark.parametrize("value", ["yes", "0", "true"])
def test_the_stalled_filter_takes_only_1(site: Stack, value: str) -> None:
    resp = requests.get(f"{site.url}/api/jobs?stalled={value}", headers=auth(TEST_OPS_TOKEN),
                        timeout=5)
    assert resp.status_code == 400 and "stalled" in resp.json()["error"]


def test_only_operators_find_stalled_jobs(site: Stack) -> None:
    assert requests.get(f"{site.url}/api/jobs?stalled=1", timeout=5).status_code == 401
