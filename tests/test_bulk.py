"""Bulk cancel and retry: count, confirm, then a job of its own runs them (real stack)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from flask import Flask
from rq import Queue
from rq.job import Job, JobStatus

from shared.config import Config
from shared.kinds import load_kinds
from shared.protocol import new_id
from shared.rqconf import SERIALIZER
from shared.store import JobStore
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import auth, csrf_token_in, wait_until

OPS_TOKEN = "bulk-ops-token"
OPS = auth(OPS_TOKEN)


@pytest.fixture(scope="module")
def ops_site(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(log_dir, tmp_path_factory.mktemp("bulk-redis"), OPS_TOKEN=OPS_TOKEN,
                          JOB_TIMEOUT="60")
    yield running
    stop_stack(running)


def failed_jobs(site: Stack, n: int, owner: str) -> list[str]:
    """``n`` failed jobs stored directly (store and RQ), as a crash would leave them."""
    url = site.env["REDIS_URL"]
    store = JobStore(redis.Redis.from_url(url, decode_responses=True))
    raw = redis.Redis.from_url(url)
    now = time.time()
    ids = [new_id() for _ in range(n)]
    store.create_many([(job_id, "demo", owner, now - i * 0.001) for i, job_id in enumerate(ids)])
    pipe = raw.pipeline()
    for job_id in ids:
        job = Job.create("tests.jobs.quiet_job", args=(job_id,), connection=raw, id=job_id,
                         serializer=SERIALIZER)
        job.set_status(JobStatus.FAILED, pipeline=pipe)
        job.save(pipeline=pipe)
    pipe.execute()
    for job_id in ids:
        store.finish(job_id, "failed", "crashed")
    return ids


def start_bulk(site: Stack, session: requests.Session, query: str) -> tuple[int, str]:
    """Open the confirmation page, read the count, confirm; the count and the bulk job id."""
    page = session.get(f"{site.url}/dashboard/bulk?{query}", headers=OPS, timeout=10)
    assert page.status_code == 200
    count = int(re.search(r'<p id="bulk-count">(\d+) job', page.text).group(1))  # type: ignore[union-attr]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    assert fields["csrf_token"] == csrf_token_in(page.text)
    resp = session.post(f"{site.url}/dashboard/bulk", data=fields, headers=OPS,
                        allow_redirects=False, timeout=10)
    assert resp.status_code == 303, resp.text
    return count, resp.headers["Location"].rsplit("/", 1)[-1]


def test_bulk_retry_of_a_thousand_failed_jobs(ops_site: Stack) -> None:
    ids = failed_jobs(ops_site, 1000, "batch-owner")
    other = failed_jobs(ops_site, 3, "someone-else")
    session = requests.Session()
    count, bulk_id = start_bulk(ops_site, session, "action=retry&state=failed&owner=batch-owner")
    assert count == 1000
    wait_until(lambda: ops_site.job_state(bulk_id)["state"] == "succeeded", timeout=120,
               what="the bulk job to finish")
    final = ops_site.job_state(bulk_id)
    assert final["result"] == {"action": "retry", "matched": 1000, "done": 1000, "skipped": 0}
    assert final["current"] == final["total"] == 1000
    store = JobStore(redis.Redis.from_url(ops_site.env["REDIS_URL"], decode_responses=True))
    for job_id in ids:
        state = store.get(job_id)
        assert state is not None and state.attempt == 2 and state.state != "failed"
    for job_id in other:  # outside the filter: untouched
        state = store.get(job_id)
        assert state is not None and state.state == "failed" and state.attempt == 1
    listed = requests.get(f"{ops_site.url}/api/jobs?state=failed", headers=OPS, timeout=10).json()
    assert sorted(j["jobId"] for j in listed["jobs"]) == sorted(other)


def test_bulk_cancel_skips_what_cannot_be_cancelled(ops_site: Stack) -> None:
    ended = failed_jobs(ops_site, 2, "mixed")
    queue = Queue("bulk-test-parking", connection=redis.Redis.from_url(ops_site.env["REDIS_URL"]),
                  serializer=SERIALIZER)
    store = JobStore(redis.Redis.from_url(ops_site.env["REDIS_URL"], decode_responses=True))
    waiting = [new_id() for _ in range(3)]
    for job_id in waiting:  # queued on a queue no worker reads
        store.create(job_id, "demo", "mixed")
        queue.enqueue("tests.jobs.quiet_job", job_id, job_id=job_id)
    session = requests.Session()
    count, bulk_id = start_bulk(ops_site, session, "action=cancel&owner=mixed")
    assert count == 5
    wait_until(lambda: ops_site.job_state(bulk_id)["state"] == "succeeded", timeout=60,
               what="the bulk job to finish")
    assert ops_site.job_state(bulk_id)["result"] == {
        "action": "cancel", "matched": 5, "done": 3, "skipped": 2}
    assert {store.get(j).state for j in waiting} == {"cancelled"}  # type: ignore[union-attr]
    assert {store.get(j).state for j in ended} == {"failed"}  # type: ignore[union-attr]
    assert queue.count == 0


def test_the_confirmation_names_the_states_each_action_changes(ops_site: Stack) -> None:
    session = requests.Session()
    scheduled = [requests.post(f"{ops_site.url}/api/jobs", headers=OPS, timeout=5, json={
        "args": {"steps": 1}, "delaySeconds": 600, "owner": "later"}).json()["id"]
        for _ in range(3)]
    retry = session.get(f"{ops_site.url}/dashboard/bulk?action=retry", headers=OPS, timeout=5)
    assert "only the failed and cancelled ones can be retried." in retry.text
    page = session.get(f"{ops_site.url}/dashboard/bulk?action=cancel&state=scheduled&owner=later",
                       headers=OPS, timeout=5)
    assert "only the scheduled, waiting, queued and running ones can be cancelled." in page.text
    count, bulk_id = start_bulk(ops_site, session, "action=cancel&state=scheduled&owner=later")
    assert count == 3
    wait_until(lambda: ops_site.job_state(bulk_id)["state"] == "succeeded", timeout=60,
               what="the bulk job to finish")
    assert ops_site.job_state(bulk_id)["result"] == {  # as the page said: none skipped
        "action": "cancel", "matched": 3, "done": 3, "skipped": 0}
    assert {ops_site.job_state(j)["state"] for j in scheduled} == {"cancelled"}


def test_only_operators_start_bulk_actions(ops_site: Stack) -> None:
    session = requests.Session()
    assert session.get(f"{ops_site.url}/dashboard/bulk?action=retry", timeout=5).status_code == 401
    page = session.get(f"{ops_site.url}/dashboard/bulk?action=retry", headers=OPS, timeout=5)
    token = csrf_token_in(page.text)
    refused = session.post(f"{ops_site.url}/dashboard/bulk",
                           data={"csrf_token": token, "action": "retry"}, timeout=5,
                           headers=auth("wrong"), allow_redirects=False)
    assert refused.status_code == 401
    no_csrf = session.post(f"{ops_site.url}/dashboard/bulk", data={"action": "retry"},
                           headers=OPS, timeout=5, allow_redirects=False)
    assert no_csrf.status_code == 400
    for bad in ("action=delete", "action=retry&state=sleeping", ""):
        assert session.get(f"{ops_site.url}/dashboard/bulk?{bad}", headers=OPS,
                           timeout=5).status_code == 400
    # Nobody starts the hidden kind through the public API.
    resp = requests.post(f"{ops_site.url}/api/jobs", json={"kind": "bulk",
                                                           "args": {"action": "retry"}}, timeout=5)
    assert resp.status_code == 400 and "unknown kind" in resp.json()["error"]
    kinds = requests.get(f"{ops_site.url}/api/kinds", timeout=5).json()["kinds"]
    assert "bulk" not in {k["name"] for k in kinds}
    assert 'value="bulk"' not in requests.get(ops_site.url + "/", timeout=5).text


def test_the_bulk_kind_imports_nothing_of_the_site(config: Config, app: Flask) -> None:
    kinds = load_kinds(config.JOB_KINDS)
    assert kinds["bulk"].hidden and kinds["bulk"].function == "shared.kinds.bulk.bulk"
    import shared.kinds.bulk as module

    assert "website" not in open(module.__file__).read().split('"""', 2)[2]
