"""Retries with backoff (issue 27, section 1), on real processes.

A kind declares ``retries`` and ``backoff`` (shared/kinds/policy.py). A failed
attempt with attempts left is ``scheduled`` with ``attempt``, ``maxAttempts``
and ``retryAt``, whoever reported the failure (an RQ worker through the site,
an external worker, a lapsed lease), then runs again at ``retryAt`` with a new
per-job token; the earlier attempts' errors stay in ``attempts``. A
``PermanentFailure`` (``"retry": false`` from an external worker) is not retried.

The RQ tests run a real stack (gunicorn, an RQ worker with its scheduler, Redis);
the external-worker tests claim and report over HTTP, against the same stack.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask.testing import FlaskClient
from rq.job import Job

from shared import keys
from shared.config import WORKER, Config
from shared.protocol import ProgressUpdate, new_id
from shared.rqconf import SERIALIZER
from shared.store import JobStore
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import TEST_OPS_TOKEN, TEST_PROGRESS_TOKEN, TEST_WORKER_TOKEN, auth, wait_until
from worker.core import lifecycle

LEASE = 2  # seconds: the stack's LEASE_SECONDS (a lapse test waits for it)


@pytest.fixture(scope="module")
def site(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack that declares the retrying test kinds (tests/retry_kinds.py)."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("retries-redis"),
                          JOB_KINDS="tests.retry_kinds", RATE_LIMIT="0", RATE_LIMIT_GLOBAL="0",
                          LEASE_SECONDS=str(LEASE))
    yield running
    stop_stack(running)


def seconds(iso: str) -> float:
    """An ISO 8601 time of the API as epoch seconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def start(site: Stack, kind: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = requests.post(site.url + "/api/jobs", json={"kind": kind, "args": args or {}},
                         timeout=5)
    assert resp.status_code == 202, resp.text
    return resp.json()  # type: ignore[no-any-return]


def state(site: Stack, job_id: str) -> dict[str, Any]:
    return site.job_state(job_id)


def wait_for(site: Stack, job_id: str, check: Any, what: str,
             timeout: float = 30) -> dict[str, Any]:
    """Poll the job's JSON state until ``check(state)`` holds; that state."""
    def seen() -> dict[str, Any] | None:
        now = state(site, job_id)
        return now if check(now) else None
    return wait_until(seen, timeout=timeout, interval=0.05, what=what)


def claim(site: Stack, kind: str = "flaky_external", wait: float = 5) -> dict[str, Any] | None:
    resp = requests.post(site.url + "/api/workers/claim", headers=auth(TEST_WORKER_TOKEN),
                         json={"kinds": [kind], "worker": "tester", "wait": wait},
                         timeout=wait + 10)
    assert resp.status_code in (200, 204), resp.text
    return resp.json() if resp.status_code == 200 else None


def report(site: Stack, token: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(site.url + "/api/progress", headers=auth(token), json=body, timeout=5)


# -- RQ kinds: a real worker ----------------------------------------------------------
def test_a_failed_attempt_is_scheduled_then_runs_again_after_its_backoff(site: Stack) -> None:
    job_id = start(site, "flaky", {"fails": 2})["id"]
    first = wait_for(site, job_id, lambda s: s["state"] == "scheduled", "the first retry")
    assert first["attempt"] == 2 and first["maxAttempts"] == 4
    assert first["message"] == "attempt 1 of 4 failed; retrying"
    assert [(a["attempt"], a["error"]) for a in first["attempts"]] == [
        (1, "RuntimeError: attempt 1 fails on purpose")]
    ended = seconds(first["attempts"][0]["endedAt"])
    assert seconds(first["retryAt"]) == pytest.approx(ended + 1, abs=0.01)  # backoff [1, 2]

    second = wait_for(site, job_id, lambda s: s["state"] == "scheduled" and s["attempt"] == 3,
                      "the second retry")
    ended_2 = seconds(second["attempts"][1]["endedAt"])
    assert ended_2 >= seconds(first["retryAt"])  # it ran again only once due
    assert seconds(second["retryAt"]) == pytest.approx(ended_2 + 2, abs=0.01)
    assert [a["attempt"] for a in second["attempts"]] == [1, 2]

    done = wait_for(site, job_id, lambda s: s["state"] == "succeeded", "the third attempt")
    assert done["result"] == {"attempt": 3}
    assert done["attempt"] == 3 and done["maxAttempts"] == 4 and "retryAt" not in done
    assert [a["attempt"] for a in done["attempts"]] == [1, 2]


def test_the_last_attempt_fails_the_job_and_a_manual_retry_still_works(site: Stack) -> None:
    created = start(site, "flaky", {"fails": 9})
    job_id = created["id"]
    failed = wait_for(site, job_id, lambda s: s["state"] == "failed", "four attempts",
                      timeout=40)
    assert failed["attempt"] == 4 and failed["maxAttempts"] == 4
    assert failed["message"] == "RuntimeError: attempt 4 fails on purpose"
    assert [a["attempt"] for a in failed["attempts"]] == [1, 2, 3]

    def retried() -> requests.Response | None:  # 409 while RQ still records the failed run
        resp = requests.post(f"{site.url}/api/jobs/{job_id}/retry", timeout=5,
                             headers=auth(created["controlToken"]))
        assert resp.status_code in (202, 409), resp.text
        return resp if resp.status_code == 202 else None
    wait_until(retried, what="the manual retry")
    again = wait_for(site, job_id, lambda s: s["state"] == "scheduled", "a new round")
    assert again["attempt"] == 6 and again["maxAttempts"] == 8  # the kind's 3 retries again


def test_a_permanent_failure_is_not_retried(site: Stack) -> None:
    job_id = start(site, "permanent")["id"]
    failed = wait_for(site, job_id, lambda s: s["state"] == "failed", "the failure")
    assert failed["message"] == "PermanentFailure: no such account"
    assert failed["attempt"] == 1 and "attempts" not in failed


def test_a_killed_work_horse_is_a_failed_attempt_retried(site: Stack) -> None:
    job_id = start(site, "crashing")["id"]  # SIGKILLs itself on attempt 1: RQ reports it
    done = wait_for(site, job_id, lambda s: s["state"] == "succeeded", "the second attempt")
    assert done["result"] == {"attempt": 2}
    assert done["attempts"][0]["error"] == "The job's process was killed by signal 9."


def test_a_failure_stored_by_the_workers_fallback_is_retried(site: Stack) -> None:
    # The site is unreachable: the worker stores its report through its own lifecycle
    # (worker/boundary.py DirectStore; WORKER_EMIT=direct alike). Same store rule, and
    # that process schedules the release, which the stack's worker runs.
    job_id = start(site, "exponential")["id"]
    worker_side = lifecycle(Config(environ=site.env, role=WORKER))
    applied = worker_side.report(ProgressUpdate(job_id, 0, "failed", "site down"), 1)
    assert applied.current == "scheduled"
    got = claim(site, "exponential", wait=10)  # exponential: within 1 s of full jitter
    assert got is not None and got["jobId"] == job_id and got["attempt"] == 2


def test_a_worker_without_secret_key_queues_the_retry_with_the_shared_token(
        site: Stack) -> None:
    job_id = start(site, "patient", {"fails": 1})["id"]  # backoff [45]: released here
    wait_for(site, job_id, lambda s: s["state"] == "scheduled", "the retry")
    conn = redis.Redis.from_url(site.redis.url)
    try:
        def rq_job() -> Job:
            return Job.fetch(job_id, connection=conn, serializer=SERIALIZER)
        wait_until(lambda: rq_job().get_status() == "failed", what="RQ to record the failure")
        conn.hset(keys.job_key(job_id), "retry_at", repr(time.time()))  # due now
        unsigned = {k: v for k, v in site.env.items() if k != "SECRET_KEY"}
        queued = lifecycle(Config(environ=unsigned, role=WORKER)).release_retry(job_id, 2)
        assert queued is not None and queued.state == "queued"
        assert rq_job().kwargs["token"] is None  # it signs nothing: PROGRESS_TOKEN reports
    finally:
        conn.close()
    done = wait_for(site, job_id, lambda s: s["state"] == "succeeded", "the second attempt")
    assert done["result"] == {"attempt": 2}


def test_cancel_of_a_scheduled_retry_stops_it(site: Stack) -> None:
    created = start(site, "patient", {"fails": 1})  # backoff [45]
    job_id = created["id"]
    wait_for(site, job_id, lambda s: s["state"] == "scheduled", "the retry")
    resp = requests.post(f"{site.url}/api/jobs/{job_id}/cancel", timeout=5,
                         headers=auth(created["controlToken"]))
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"]["state"] == "cancelled"
    # Its release, due in 45 s, comes now: it finds the job cancelled and does nothing.
    assert lifecycle(Config(environ=site.env, role=WORKER)).release_retry(job_id, 2) is None
    assert state(site, job_id)["state"] == "cancelled"


def test_only_the_owner_or_an_operator_may_cancel_a_scheduled_retry(site: Stack) -> None:
    created = start(site, "patient", {"fails": 1})
    job_id = created["id"]
    wait_for(site, job_id, lambda s: s["state"] == "scheduled", "the retry")
    url = f"{site.url}/api/jobs/{job_id}/cancel"
    assert requests.post(url, timeout=5).status_code in (401, 403)
    assert requests.post(url, timeout=5, headers={"X-Control-Token": "nope"}).status_code in (
        401, 403)
    ops = requests.post(url, timeout=5, headers=auth(TEST_OPS_TOKEN))  # operators may
    assert ops.status_code == 200, ops.text


# -- external kinds: a worker over HTTP -------------------------------------------------
def test_an_external_failed_report_is_retried_with_a_new_token(site: Stack) -> None:
    job_id = start(site, "flaky_external")["id"]
    got = claim(site)
    assert got is not None and got["jobId"] == job_id and got["attempt"] == 1
    resp = report(site, got["token"], {"jobId": job_id, "state": "failed",
                                       "message": "disk full"})
    assert resp.status_code == 204, resp.text
    assert resp.headers["X-Jobcast-State"] == "scheduled"
    waiting = state(site, job_id)
    assert waiting["state"] == "scheduled" and waiting["attempt"] == 2
    assert waiting["attempts"][0]["error"] == "disk full"
    # The failed attempt's token is done: 409 for its reports from now on.
    late = report(site, got["token"], {"jobId": job_id, "state": "running", "progress": 50})
    assert late.status_code == 409, late.text
    assert claim(site, wait=0) is None  # not before its backoff
    again = claim(site, wait=5)
    assert again is not None and again["jobId"] == job_id and again["attempt"] == 2
    assert again["token"] != got["token"]
    assert time.time() >= seconds(waiting["retryAt"]) - 0.05
    done = report(site, again["token"], {"jobId": job_id, "state": "succeeded"})
    assert done.status_code == 204 and done.headers["X-Jobcast-State"] == "succeeded"


def test_an_external_failed_report_with_retry_false_ends_the_job(site: Stack) -> None:
    job_id = start(site, "flaky_external")["id"]
    got = claim(site)
    assert got is not None and got["jobId"] == job_id
    resp = report(site, got["token"], {"jobId": job_id, "state": "failed", "retry": False,
                                       "message": "bad input"})
    assert resp.status_code == 204 and resp.headers["X-Jobcast-State"] == "failed"


@pytest.mark.parametrize("body", [{"state": "running", "progress": 1, "retry": False},
                                  {"state": "failed", "retry": "no"}],
                         ids=["retry-false-not-failed", "retry-not-a-boolean"])
def test_a_bad_retry_field_is_400(site: Stack, body: dict[str, Any]) -> None:
    job_id = start(site, "exponential")["id"]  # nobody claims it
    resp = report(site, TEST_PROGRESS_TOKEN, {"jobId": job_id, **body})
    assert resp.status_code == 400 and "retry" in resp.json()["error"]


def test_a_lapsed_lease_is_a_failed_attempt_retried_after_its_backoff(site: Stack) -> None:
    job_id = start(site, "flaky_external")["id"]
    first = claim(site)
    assert first is not None and first["jobId"] == job_id
    # The worker goes silent: its lease lapses; the next claim sweeps it.
    # (a claim sweeps lapsed leases: once it has, the job is scheduled, not claimable)
    wait_until(lambda: claim(site, wait=0) is None and state(site, job_id)["state"]
               == "scheduled", timeout=LEASE + 10, what="the lease to lapse and be swept")
    waiting = state(site, job_id)
    assert waiting["state"] == "scheduled" and waiting["attempt"] == 2
    assert "stopped reporting (lease lapsed)" in waiting["attempts"][0]["error"]
    second = claim(site, wait=5)
    assert second is not None and second["jobId"] == job_id and second["attempt"] == 2
    assert report(site, first["token"], {"jobId": job_id, "state": "running",
                                         "progress": 5}).status_code == 409
    # Its last attempt lapses too: failed, not queued again.
    wait_until(lambda: claim(site, wait=0) is None and state(site, job_id)["attempt"] == 3,
               timeout=LEASE + 10, what="the second lease to lapse and be swept")
    third = claim(site, wait=5)
    assert third is not None and third["attempt"] == 3
    wait_until(lambda: claim(site, wait=0) is None and state(site, job_id)["state"]
               == "failed", timeout=LEASE + 10, what="the last lease to lapse and be swept")
    failed = state(site, job_id)
    assert failed["state"] == "failed" and "on attempt 3 of 3: given up" in failed["message"]
    assert [a["attempt"] for a in failed["attempts"]] == [1, 2]


# -- the store's rule, on a real Redis (no worker) --------------------------------------
def test_exponential_backoff_doubles_up_to_the_cap_with_full_jitter(
        redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    job_id = new_id()
    store.create(job_id, "exponential", max_attempts="30", backoff="exponential")
    waits = []
    for attempt in range(1, 15):
        now = time.time()
        applied = store.apply(ProgressUpdate(job_id, 0, "failed", "boom"), now, attempt)
        assert applied.current == "scheduled"
        waits.append(float(redis_client.hget(keys.job_key(job_id), "retry_at")) - now)
    for attempt, wait in enumerate(waits, start=1):
        assert 0 <= wait <= min(3600, 2 ** (attempt - 1)) + 0.01, (attempt, wait)
    assert max(waits[10:]) > 16  # it grew (jitter is random: 4 draws over 512 s)
    kept = json.loads(redis_client.hget(keys.job_key(job_id), "failures") or "[]")
    assert len(kept) == 14


def test_earlier_errors_are_bounded(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    job_id = new_id()
    store.create(job_id, "flaky", max_attempts="100", backoff="[0]")
    for attempt in range(1, 31):
        store.apply(ProgressUpdate(job_id, 0, "failed", f"boom {attempt}"), None, attempt)
    state_now = store.get(job_id)
    assert state_now is not None and state_now.attempt == 31
    assert [f["attempt"] for f in state_now.failures] == list(range(11, 31))  # the newest 20


def test_a_job_of_a_kind_without_retries_fails_at_once(client: FlaskClient) -> None:
    resp = client.post("/api/jobs", json={"kind": "external", "args": {}})
    job_id = resp.get_json()["id"]
    failed = client.post("/api/progress", headers=auth(TEST_PROGRESS_TOKEN),
                         json={"jobId": job_id, "state": "failed", "message": "x"})
    assert failed.status_code == 204 and failed.headers["X-Jobcast-State"] == "failed"
    body = client.get(f"/api/jobs/{job_id}").get_json()
    assert "maxAttempts" not in body and "attempts" not in body
