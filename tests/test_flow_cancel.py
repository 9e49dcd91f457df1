"""#27 section 8, a cancel that is acknowledged, then enforced; on real processes (Redis,
gunicorn, an RQ worker, the tick process) with ``CANCEL_GRACE=1.5``.

A cancel of a running job answers at once with ``cancelRequested`` (the job still
runs: "stopping…"); the worker hears of it (its context for an RQ job, the answers
to its reports and heartbeats for an external one), stops and the job ends
``cancelled``; one that does not stop is stopped by force after the grace (its
work horse killed, or its lease revoked: 409). Queued jobs are cancelled at once,
and only the owner or an operator may cancel.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from rq.job import Job, JobStatus

from shared.rqconf import SERIALIZER
from tests.conftest import Stack, start_stack, stop_stack
from tests.queue_flow import beat, claimed
from tests.support import TEST_OPS_TOKEN, EventRecorder, Process, auth, wait_until

GRACE = "1.5"
ACKNOWLEDGED = "cancelled on request; the worker stopped"
FORCED = "cancelled on request; stopped by force after 1.5 s (the worker did not stop: {how})"


@pytest.fixture(scope="module")
def site(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with the test kinds, a short grace, and the tick process that enforces it."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("flow-cancel"),
                          JOB_KINDS="tests.flow_stop_kinds", CANCEL_GRACE=GRACE, RATE_LIMIT="0")
    ticking = Process("cron-cancel", [sys.executable, "-m", "worker.cron", "--interval", "0.2"],
                      running.env, log_dir).start()
    yield running
    ticking.stop()
    stop_stack(running)


def start(site: Stack, kind: str, args: dict[str, Any] | None = None) -> tuple[str, str]:
    """Start a job; its id and control token."""
    resp = requests.post(f"{site.url}/api/jobs", json={"kind": kind, "args": args or {}},
                         timeout=5)
    assert resp.status_code == 202, resp.text
    return resp.json()["id"], resp.json()["controlToken"]


def cancel(site: Stack, job_id: str, token: str | None) -> requests.Response:
    return requests.post(f"{site.url}/api/jobs/{job_id}/cancel", timeout=5,
                         headers=auth(token) if token else {})


def wait_state(site: Stack, job_id: str, state: str, timeout: float = 20) -> dict[str, Any]:
    return wait_until(lambda: (got := site.job_state(job_id))["state"] == state and got,
                      timeout=timeout, what=f"job {job_id} {state}")


def report(site: Stack, body: Any, token: str) -> requests.Response:
    return requests.post(f"{site.url}/api/progress", json=body, headers=auth(token), timeout=5)


@pytest.mark.parametrize("how", ["raise", "return"])
def test_an_rq_job_that_checks_its_context_stops_and_the_cancel_is_acknowledged(
        site: Stack, how: str) -> None:
    job_id, token = start(site, "heeds_cancel", {"how": how})
    wait_state(site, job_id, "running")
    rec = EventRecorder(site.url, job_id)
    try:
        asked = cancel(site, job_id, token)
        assert asked.status_code == 200, asked.text
        assert asked.json()["state"]["state"] == "running"  # asked: not ended yet
        assert asked.json()["state"]["cancelRequested"] is True
        rec.wait_for(lambda events: any(name == "updateProgress" and data.get("cancelRequested")
                                        for name, data in events), what="stopping… pushed")
        final = wait_state(site, job_id, "cancelled", timeout=10)
    finally:
        rec.close()
    assert final["message"] == ACKNOWLEDGED and "cancelRequested" not in final
    assert f"job {job_id} stopped on request" in site.worker.log_tail(200_000)


def test_an_rq_job_that_ignores_the_cancel_is_killed_after_the_grace(site: Stack) -> None:
    job_id, token = start(site, "ignores_cancel")
    wait_state(site, job_id, "running")
    asked = cancel(site, job_id, token)
    assert asked.status_code == 200 and asked.json()["state"]["cancelRequested"] is True
    assert site.job_state(job_id)["state"] == "running"
    again = cancel(site, job_id, token)  # asking twice changes nothing
    assert again.status_code == 200 and again.json()["state"]["cancelRequested"] is True
    final = wait_state(site, job_id, "cancelled", timeout=15)
    assert final["message"] == FORCED.format(how="its work horse was killed")
    raw = redis.Redis.from_url(site.redis.url)
    try:  # RQ's stop-job command killed the work horse: RQ records the job as stopped
        wait_until(lambda: Job.fetch(job_id, connection=raw, serializer=SERIALIZER)
                   .get_status() == JobStatus.STOPPED, timeout=10, what="the horse killed")
    finally:
        raw.close()
    assert site.worker.alive()
    assert site.job_state(job_id)["state"] == "cancelled"  # its horse's end changed nothing


def test_only_the_owner_or_an_operator_may_cancel_and_a_refusal_asks_nothing(
        site: Stack) -> None:
    job_id, token = start(site, "heeds_cancel")
    _other_id, other_token = start(site, "stalls")
    wait_state(site, job_id, "running")
    for who in (None, other_token, "not-a-token"):
        refused = cancel(site, job_id, who)
        assert refused.status_code == 403, refused.text
        state = site.job_state(job_id)
        assert state["state"] == "running" and "cancelRequested" not in state
    unknown = cancel(site, "6f1c2f5e-1c1b-4d52-8b0e-6f2b7c1a9d10", TEST_OPS_TOKEN)
    assert unknown.status_code == 404
    assert cancel(site, job_id, TEST_OPS_TOKEN).status_code == 200  # an operator may
    wait_state(site, job_id, "cancelled", timeout=10)
    ended = cancel(site, job_id, token)
    assert ended.status_code == 409 and "cancelled" in ended.json()["error"]
    cancel(site, _other_id, other_token)


def test_a_queued_job_is_cancelled_at_once(site: Stack) -> None:
    job_id, token = start(site, "stalls")  # external: nobody claims it, it stays queued
    done = cancel(site, job_id, token)
    assert done.status_code == 200 and done.json()["state"]["state"] == "cancelled"
    assert done.json()["state"]["message"] == "cancelled on request"


def test_an_external_worker_hears_of_the_cancel_and_stops(site: Stack) -> None:
    job_id, token = start(site, "stalls")
    job = claimed(site, "stalls")
    assert job["jobId"] == job_id
    first = report(site, {"jobId": job_id, "state": "running", "progress": 10}, job["token"])
    assert first.status_code == 204 and "X-Jobcast-Cancel-Requested" not in first.headers
    assert "cancelRequested" not in beat(site, job_id)
    assert cancel(site, job_id, token).status_code == 200
    assert beat(site, job_id) == {"jobId": job_id, "state": "running", "attempt": 1,
                                  "held": True, "cancelRequested": True}
    batch = report(site, [{"jobId": job_id, "state": "running", "progress": 20}], job["token"])
    assert batch.json()["results"][0]["cancelRequested"] is True
    stopped = report(site, {"jobId": job_id, "state": "cancelled", "progress": 20},
                     job["token"])
    assert stopped.status_code == 204 and stopped.headers["X-Jobcast-State"] == "cancelled"
    final = site.job_state(job_id)
    assert final["state"] == "cancelled" and final["message"] == ACKNOWLEDGED


def test_an_external_worker_that_does_not_stop_loses_its_lease(site: Stack) -> None:
    job_id, token = start(site, "stalls")
    job = claimed(site, "stalls")
    assert cancel(site, job_id, token).status_code == 200
    going = report(site, {"jobId": job_id, "state": "running", "progress": 30}, job["token"])
    assert going.status_code == 204 and going.headers["X-Jobcast-Cancel-Requested"] == "1"
    final = wait_state(site, job_id, "cancelled", timeout=15)
    assert final["message"] == FORCED.format(how="its lease was revoked")
    late = report(site, {"jobId": job_id, "state": "running", "progress": 40}, job["token"])
    assert late.status_code == 409 and "revoked" in late.json()["error"]
    assert beat(site, job_id) == {"jobId": job_id, "state": "cancelled", "attempt": 1,
                                  "held": False}
