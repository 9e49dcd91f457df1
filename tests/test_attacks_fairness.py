"""Issue #26, part 2: one owner's batch must not push everyone else's job back.

Each test reproduces an attack that got through before fair share:

* a 2,000-job batch put a victim's job 1,999th in line (here: 300 short jobs);
* ``POST /api/batches/<id>/cancel`` sent 150 times stored and enqueued 150 bulk
  jobs, each at the front of the queue, past every rate limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path

import pytest
import redis
import requests
from flask.testing import FlaskClient
from rq import Queue

from shared import keys
from shared.protocol import new_id
from shared.store import JobStore
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import auth, session_from, wait_until


def client_at(source: str) -> requests.Session:
    """A cookie-less API client connecting from ``source`` (127.0.0.x): its address names it."""
    session = session_from(source)
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return session


@pytest.fixture(scope="module")
def one_worker(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A site with one RQ worker (SimpleWorker: no fork per job, so jobs are short)."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("fair-redis"),
                          WORKER_CLASS="simple", DEMO_STEP_DELAY="0.05")
    yield running
    stop_stack(running)


def test_a_big_batch_does_not_push_another_clients_job_back(one_worker: Stack) -> None:
    attacker, victim = client_at("127.0.0.2"), client_at("127.0.0.3")
    resp = attacker.post(f"{one_worker.url}/api/batches", timeout=60,
                         json={"kind": "demo", "items": [{"steps": 3}] * 300})
    assert resp.status_code == 202, resp.text
    batch_id = resp.json()["batchId"]
    wait_until(lambda: attacker.get(f"{one_worker.url}/api/batches/{batch_id}",
                                    timeout=5).json()["counts"].get("running", 0)
               + attacker.get(f"{one_worker.url}/api/batches/{batch_id}",
                              timeout=5).json()["done"] > 0,
               timeout=30, what="the batch to start")
    job = victim.post(f"{one_worker.url}/api/jobs", json={"kind": "demo", "args": {"steps": 3}},
                      timeout=10)
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    wait_until(lambda: one_worker.job_state(job_id)["state"] == "succeeded", timeout=60,
               what="the victim's job to run")
    done = attacker.get(f"{one_worker.url}/api/batches/{batch_id}", timeout=5).json()["done"]
    # Ahead of the victim: the batch's running job and its one waiting job, at most
    # (and the ones done before the victim's job was started).
    assert done <= 5, f"{done} of the batch's jobs ran before the victim's"
    requests.post(f"{one_worker.url}/api/batches/{batch_id}/cancel", timeout=10,
                  headers=auth(resp.json()["controlToken"]))


def test_batch_cancel_is_idempotent_and_rate_limited(stack: Stack) -> None:
    resp = requests.post(f"{stack.url}/api/batches", timeout=30,
                         json={"kind": "external", "items": [{}] * 50})
    assert resp.status_code == 202, resp.text
    batch_id, token = resp.json()["batchId"], resp.json()["controlToken"]
    answers = [requests.post(f"{stack.url}/api/batches/{batch_id}/cancel", timeout=10,
                             headers=auth(token)) for _ in range(40)]
    codes = [a.status_code for a in answers]
    assert codes[0] == 202 and 429 in codes, codes  # RATE_LIMIT is 30 a minute
    assert {a.json()["bulkJobId"] for a in answers if a.status_code == 202} == {
        answers[0].json()["bulkJobId"]}
    client = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    assert client.zcard(keys.owner_index(f"batch:{batch_id}")) == 1  # one bulk job, stored once
    wait_until(lambda: stack.job_state(answers[0].json()["bulkJobId"])["state"] == "succeeded",
               timeout=60, what="the bulk cancel to finish")
    again = requests.post(f"{stack.url}/api/batches/{batch_id}/cancel", timeout=10,
                          headers=auth(token))  # done already: the same job again
    assert again.status_code in (202, 429)
    if again.status_code == 202:
        assert again.json()["bulkJobId"] == answers[0].json()["bulkJobId"]


def test_a_batch_cancel_does_not_jump_the_queue(client: FlaskClient, redis_url: str) -> None:
    victim = client.post("/api/jobs", json={"kind": "demo", "args": {}},
                         environ_base={"REMOTE_ADDR": "10.0.0.3"})
    assert victim.status_code == 202
    batch = client.post("/api/batches", json={"kind": "demo", "items": [{}] * 5},
                        environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert batch.status_code == 202
    cancel = client.post(f"/api/batches/{batch.json['batchId']}/cancel",
                         headers=auth(batch.json["controlToken"]),
                         environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert cancel.status_code == 202
    queued = Queue("jobcast", connection=redis.Redis.from_url(redis_url)).get_job_ids()
    assert queued[0] == victim.json["id"], queued  # the victim's job is still first
    assert cancel.json["bulkJobId"] in queued


def test_held_jobs_keep_their_order_and_skip_cancelled_ones(redis_client: redis.Redis) -> None:
    from shared.fairshare import FairShare

    store = JobStore(redis_client)
    fair = FairShare(redis_client, depth=1)
    ids = [new_id() for _ in range(5)]
    for job_id in ids:
        store.create(job_id)
    first = fair.admit("rq:q", "a-1", ids)
    assert first.new == ids[:1] and fair.held("rq:q", "a-1") == 4
    other = new_id()
    store.create(other)
    assert fair.admit("rq:q", "a-2", [other]).new == [other]  # another tenant: in at once
    store.finish(ids[1], "cancelled")
    released = fair.release(ids[0])  # a worker took ids[0]
    assert released is not None and released.from_held == [ids[2]]  # ids[1] was cancelled
    assert fair.release(ids[0]) is None  # released once
    store.finish(ids[2], "succeeded")  # ended without a release (say, the worker died)
    healed = fair.admit("rq:q", "a-1", [])
    assert healed.from_held == [ids[3]]
