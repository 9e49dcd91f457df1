"""One lifecycle (issue 25): every way a job starts honours its kind, on real processes.

Before, a recurring schedule and a batch's ``onComplete`` were started by their
own copy of "store and enqueue", which always handed the job to RQ: a job of an
external kind could never be claimed, and a kind's ``timeout`` was ignored. Now
the site, the tick, the bulk kind and the worker's fallback all start jobs
through ``shared.lifecycle.Lifecycle.start``. These tests start jobs each way
and check that an external job reaches a worker claiming over HTTP and that an
RQ job runs with its kind's timeout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from rq.job import Job

from shared.config import WORKER, Config
from shared.rqconf import SERIALIZER
from shared.schedules import ScheduleStore
from tests.conftest import Stack, start_stack, stop_stack
from tests.lifecycle_kinds import TIMED_TIMEOUT
from tests.support import (
    TEST_OPS_TOKEN,
    TEST_WORKER_TOKEN,
    auth,
    free_port,
    start_worker,
    wait_until,
)
from worker.core import lifecycle
from worker.cron import Ticker

EXTERNAL_THEN = {"kind": "external", "args": {"then": True}}


@pytest.fixture(scope="module")
def site(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack that also declares the ``timed`` kind (its own timeout)."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("lifecycle-redis"),
                          JOB_KINDS="tests.lifecycle_kinds", RATE_LIMIT="0",
                          RATE_LIMIT_GLOBAL="0", DEMO_STEP_DELAY="0.01")
    yield running
    stop_stack(running)


def claim(site: Stack, kind: str = "external", wait: float = 10) -> dict[str, Any] | None:
    """One claim over HTTP, as an external worker makes it (None: nothing came)."""
    resp = requests.post(site.url + "/api/workers/claim", headers=auth(TEST_WORKER_TOKEN),
                         json={"kinds": [kind], "worker": "tester", "wait": wait},
                         timeout=wait + 10)
    assert resp.status_code in (200, 204), resp.text
    return resp.json() if resp.status_code == 200 else None


def finish(site: Stack, got: dict[str, Any]) -> None:
    """Report a claimed job succeeded, with its per-job token."""
    resp = requests.post(site.url + "/api/progress", headers=auth(got["token"]), timeout=5,
                         json={"jobId": got["jobId"], "state": "succeeded"})
    assert resp.status_code == 204, resp.text


def rq_timeout(site: Stack, job_id: str) -> int | None:
    """The timeout RQ holds for a job."""
    conn = redis.Redis.from_url(site.redis.url)
    try:
        return Job.fetch(job_id, connection=conn, serializer=SERIALIZER).timeout
    finally:
        conn.close()


def start(site: Stack, body: dict[str, Any]) -> str:
    resp = requests.post(site.url + "/api/jobs", json=body, timeout=5)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def batch(site: Stack, kind: str, items: list[dict[str, Any]],
          then: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": kind, "items": items}
    if then is not None:
        body["onComplete"] = then
    resp = requests.post(site.url + "/api/batches", json=body, timeout=10)
    assert resp.status_code == 202, resp.text
    return resp.json()  # type: ignore[no-any-return]


def complete_job(site: Stack, batch_id: str) -> str:
    """The id of the job a batch's ``onComplete`` started (waited for)."""
    def started() -> str | None:
        totals = requests.get(f"{site.url}/api/batches/{batch_id}", timeout=5).json()
        return totals.get("completeJob")
    return str(wait_until(started, timeout=30, what="the batch's onComplete job"))


def test_a_schedule_of_an_external_kind_reaches_a_claiming_worker(site: Stack) -> None:
    cfg = Config(environ=site.env, role=WORKER)
    schedules = ScheduleStore(redis.Redis.from_url(site.redis.url, decode_responses=True))
    schedule = schedules.create("* * * * *", "external", {"from": "cron"})
    started = Ticker(cfg).tick(now=time.time() + 120)  # as the tick process would, once due
    assert len(started) == 1
    got = claim(site)
    assert got is not None and got["jobId"] == started[0] and got["args"] == {"from": "cron"}
    assert site.job_state(got["jobId"])["state"] == "running"
    schedules.delete(schedule.schedule_id)


def test_an_external_on_complete_started_by_the_site_reaches_a_claiming_worker(
        site: Stack) -> None:
    made = batch(site, "external", [{"child": 1}], then=EXTERNAL_THEN)
    child = claim(site)
    assert child is not None and child["args"] == {"child": 1}
    finish(site, child)  # the site applies the child's end: its lifecycle starts onComplete
    then = claim(site)
    assert then is not None and then["args"] == {"then": True}
    assert then["jobId"] == complete_job(site, made["batchId"])


def test_an_external_on_complete_started_by_a_bulk_cancel_reaches_a_claiming_worker(
        site: Stack) -> None:
    made = batch(site, "external", [{"child": 1}, {"child": 2}], then=EXTERNAL_THEN)
    resp = requests.post(f"{site.url}/api/batches/{made['batchId']}/cancel",
                         headers=auth(made["controlToken"]), timeout=5)
    assert resp.status_code == 202, resp.text  # the worker's bulk job cancels the children
    job_id = complete_job(site, made["batchId"])
    then = claim(site)
    assert then is not None and then["jobId"] == job_id and then["args"] == {"then": True}


def test_an_external_on_complete_started_by_the_workers_fallback_reaches_a_claiming_worker(
        site: Stack) -> None:
    """A worker that cannot reach the site ends the batch's last child itself."""
    lost_env = {**site.env, "PROGRESS_URL": f"http://127.0.0.1:{free_port()}/api/progress",
                "REPORT_RETRY_SECONDS": "0.3", "QUEUE_NAME": "lost"}
    lost = start_worker(lost_env, site.log_dir, name="lost-worker")
    try:
        # The batch as the site stores it, but on the lost worker's queue.
        jobs = lifecycle(Config(environ=lost_env, role=WORKER))
        batch_id, _ids = jobs.start_batch(jobs.kind("timed"), [{"n": 1}],
                                          on_complete=EXTERNAL_THEN)
        job_id = complete_job(site, batch_id)
        then = claim(site)
        assert then is not None and then["jobId"] == job_id and then["args"] == {"then": True}
        assert "through the fallback" in lost.log_tail(50_000)
    finally:
        lost.stop()


def test_a_kinds_timeout_holds_on_every_way_a_job_starts(site: Stack) -> None:
    """API, form, delayed, batch child, schedule, onComplete and retry all give RQ the
    kind's own timeout, not JOB_TIMEOUT."""
    assert int(site.env.get("JOB_TIMEOUT", "30")) != TIMED_TIMEOUT
    ids = {"api": start(site, {"kind": "timed", "args": {}}),
           "delayed": start(site, {"kind": "timed", "args": {}, "delaySeconds": 3600})}
    session = requests.Session()
    page = session.get(site.url + "/", timeout=5).text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    form = session.post(site.url + "/jobs", data={"kind": "timed", "n": "1", "csrf_token": token},
                        allow_redirects=False, timeout=5)
    assert form.status_code == 303, form.text
    ids["form"] = form.headers["Location"].rsplit("/", 1)[1]
    made = batch(site, "timed", [{"n": 2}], then={"kind": "timed", "args": {"n": 3}})
    ids["onComplete"] = complete_job(site, made["batchId"])
    ids["batch child"] = requests.get(f"{site.url}/api/jobs?batch={made['batchId']}",
                                      headers=auth(TEST_OPS_TOKEN), timeout=5
                                      ).json()["jobs"][0]["jobId"]
    schedules = ScheduleStore(redis.Redis.from_url(site.redis.url, decode_responses=True))
    schedule = schedules.create("* * * * *", "timed", {"n": 4})
    ids["schedule"] = Ticker(Config(environ=site.env, role=WORKER)).tick(now=time.time() + 120)[0]
    schedules.delete(schedule.schedule_id)
    wait_until(lambda: site.job_state(ids["api"])["state"] == "succeeded", timeout=30,
               what="the API's job to run")
    cancelled = requests.post(f"{site.url}/api/jobs/{ids['delayed']}/cancel",
                              headers=auth(TEST_OPS_TOKEN), timeout=5)
    assert cancelled.status_code == 200, cancelled.text
    retried = requests.post(f"{site.url}/api/jobs/{ids['delayed']}/retry",
                            headers=auth(TEST_OPS_TOKEN), timeout=5)
    assert retried.status_code == 202, retried.text
    ids["retry"] = ids.pop("delayed")
    assert {way: rq_timeout(site, job_id) for way, job_id in ids.items()} == dict.fromkeys(
        ids, TIMED_TIMEOUT)
