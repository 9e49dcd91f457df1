"""Dependencies (#27 section 2): a job started ``after`` others waits, runs when they all
succeeded, is cancelled when one fails (or runs anyway), and shows it live. Real Redis,
gunicorn and RQ worker; the jobs waited for are external ones, finished over the claim
API as an external worker would; refusals include jobs the caller may not read."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from shared import keys
from shared.after import AFTER_MAX, Waits
from shared.protocol import FAILED, QUEUED, SUCCEEDED, WAITING, new_id
from shared.store import JobStore
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import (
    TEST_OPS_TOKEN,
    TEST_WORKER_TOKEN,
    EventRecorder,
    auth,
    second_web,
    wait_until,
)

FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with the test kinds of tests/flow_kinds.py."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("after-redis"),
                          JOB_KINDS="tests.flow_kinds", RATE_LIMIT="0")
    yield running
    stop_stack(running)


@pytest.fixture(scope="module")
def private_site(stack: Stack, log_dir: Path) -> Iterator[str]:
    """A second web process on the same Redis with ``JOB_VISIBILITY=owner``."""
    web, url = second_web(stack.env, log_dir, "web-private", JOB_VISIBILITY="owner")
    yield url
    web.stop()


def post(url: str, body: dict[str, Any], session: Any = requests) -> requests.Response:
    return session.post(url + "/api/jobs", json=body, timeout=10)  # type: ignore[no-any-return]


def start(stack: Stack, body: dict[str, Any]) -> str:
    resp = post(stack.url, body)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def external_dep(stack: Stack) -> str:
    """A job of the built-in external kind: it ends only when the test says so."""
    return start(stack, {"kind": "external", "args": {"tag": new_id()}})


def finish(stack: Stack, job_id: str, state: str = SUCCEEDED) -> None:
    """Claim external jobs until ``job_id`` comes, then report ``state`` for it."""
    def claimed() -> dict[str, Any] | None:
        resp = requests.post(stack.url + "/api/workers/claim", headers=auth(TEST_WORKER_TOKEN),
                             json={"kinds": ["external"], "worker": "test"}, timeout=10)
        got = resp.json() if resp.status_code == 200 else None
        if got is not None and got["jobId"] != job_id:  # another test's leftover: end it
            requests.post(stack.url + "/api/progress", headers=auth(got["token"]), timeout=10,
                          json={"jobId": got["jobId"], "state": "cancelled"})
            return None
        return got

    got = wait_until(claimed, timeout=10, what=f"claim of {job_id}")
    resp = requests.post(stack.url + "/api/progress", headers=auth(got["token"]), timeout=10,
                         json={"jobId": job_id, "state": state})
    assert resp.status_code == 204, resp.text


def ended(stack: Stack, job_id: str, timeout: float = 20) -> dict[str, Any]:
    return wait_until(lambda: (s := stack.job_state(job_id))["state"] in FINAL and s,
                      timeout=timeout, what=f"job {job_id} to end")


def test_a_job_waits_for_each_and_runs_when_all_succeeded_pushed_live(stack: Stack) -> None:
    first, second = external_dep(stack), external_dep(stack)
    resp = post(stack.url, {"kind": "flow_step", "args": {"n": 7}, "after": [first, second]})
    assert resp.status_code == 202, resp.text
    job = resp.json()["id"]
    assert resp.json()["state"]["state"] == WAITING
    state = stack.job_state(job)
    assert state["state"] == WAITING and state["after"] == [first, second]
    assert state["waitingFor"] == [first, second]
    rec = EventRecorder(stack.url, job)
    try:
        rec.wait_for(lambda ev: any(n == "updateProgress" for n, _ in ev), what="state on join")
        finish(stack, first)
        rec.wait_for(lambda ev: any(n == "updateProgress" and d["waitingFor"] == [second]
                                    for n, d in ev), what="waitingFor without the first")
        assert stack.job_state(job)["state"] == WAITING
        finish(stack, second)
        rec.wait_for(lambda ev: any(n == "updateProgress" and d["state"] == SUCCEEDED
                                    for n, d in ev), timeout=20, what="the job's end")
    finally:
        rec.close()
    pushed = [d for n, d in rec.events if n == "updateProgress"]
    assert [d["state"] for d in pushed if d["state"] in (WAITING, QUEUED)][:2] == [WAITING, WAITING]
    assert any(d["state"] == QUEUED and d.get("waitingFor") == [] for d in pushed), pushed
    assert stack.job_state(job)["result"] == {"n": 7}


def test_a_job_whose_dependencies_succeeded_already_runs_at_once(stack: Stack) -> None:
    dep = start(stack, {"kind": "flow_step", "args": {"n": 1}})
    assert ended(stack, dep)["state"] == SUCCEEDED
    job = start(stack, {"kind": "flow_step", "args": {"n": 2}, "after": [dep]})
    final = ended(stack, job)
    assert final["state"] == SUCCEEDED and final["waitingFor"] == [] and final["after"] == [dep]


def test_a_failed_dependency_cancels_the_waiting_job_and_its_own_waiters(stack: Stack) -> None:
    dep = external_dep(stack)
    job = start(stack, {"kind": "flow_step", "after": [dep]})
    then = start(stack, {"kind": "flow_step", "after": [job]})
    finish(stack, dep, FAILED)
    state = ended(stack, job)
    assert state["state"] == "cancelled"
    assert state["message"] == f"job {dep} it waited for failed"
    chained = ended(stack, then)
    assert chained["state"] == "cancelled"
    assert chained["message"] == f"job {job} it waited for was cancelled"


def test_after_failure_run_runs_anyway_and_says_why(stack: Stack) -> None:
    dep = external_dep(stack)
    job = start(stack, {"kind": "flow_anyway", "args": {"n": 3}, "after": [dep]})
    finish(stack, dep, "cancelled")
    final = ended(stack, job)
    assert final["state"] == SUCCEEDED and final["result"] == {"n": 3}
    timeline_says = requests.get(f"{stack.url}/api/jobs/{job}", timeout=5).json()
    assert timeline_says["waitingFor"] == []


def test_a_waiting_job_can_be_cancelled_and_stays_so(stack: Stack) -> None:
    dep = external_dep(stack)
    created = post(stack.url, {"kind": "flow_step", "after": [dep]}).json()
    resp = requests.post(f"{stack.url}/api/jobs/{created['id']}/cancel", timeout=5,
                         headers=auth(created["controlToken"]))
    assert resp.status_code == 200 and resp.json()["state"]["state"] == "cancelled"
    finish(stack, dep)
    store = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:  # the dependency's end was reacted to: its waiters were read, and left alone
        wait_until(lambda: not store.exists(keys.job_waiters_key(dep)), timeout=5)
    finally:
        store.close()
    assert stack.job_state(created["id"])["state"] == "cancelled"


def test_a_waiting_external_job_is_claimable_only_once_ready(stack: Stack) -> None:
    dep = start(stack, {"kind": "flow_step"})
    ext_dep = external_dep(stack)
    job = start(stack, {"kind": "external", "args": {"after": "yes"}, "after": [dep, ext_dep]})
    ended(stack, dep)
    finish(stack, ext_dep)  # claims skip the waiting job: only ext_dep is queued
    got = wait_until(lambda: requests.post(
        stack.url + "/api/workers/claim", headers=auth(TEST_WORKER_TOKEN), timeout=10,
        json={"kinds": ["external"], "worker": "t"}).json(), timeout=10, what="the claim")
    assert got["jobId"] == job and got["args"] == {"after": "yes"}


def test_a_batch_waits_as_a_whole(stack: Stack) -> None:
    dep = external_dep(stack)
    resp = requests.post(stack.url + "/api/batches", timeout=10, json={
        "kind": "flow_step", "items": [{"n": 1}, {"n": 2}], "after": [dep]})
    assert resp.status_code == 202, resp.text
    batch = resp.json()["batchId"]
    totals = requests.get(f"{stack.url}/api/batches/{batch}", timeout=5).json()
    assert totals["counts"][WAITING] == 2 and totals["done"] == 0
    finish(stack, dep)
    done = wait_until(lambda: (t := requests.get(f"{stack.url}/api/batches/{batch}",
                                                 timeout=5).json())["complete"] and t,
                      timeout=20, what="the batch's end")
    assert done["counts"][SUCCEEDED] == 2 and done["counts"][WAITING] == 0


@pytest.mark.parametrize(("after", "says"), [
    ("not a list", "after must be a list of job ids"),
    (["nope"], "after must hold job ids (UUIDs) only"),
    (["5f0c6c1e-8a4e-4d1b-9d7e-2b1b8e0b7a51"], "after names an unknown job"),
    (["5f0c6c1e-8a4e-4d1b-9d7e-2b1b8e0b7a51"] * 2, "names job"),
    ([f"5f0c6c1e-8a4e-4d1b-9d7e-{n:012d}" for n in range(AFTER_MAX + 1)], "at most"),
], ids=["not-a-list", "not-ids", "unknown", "twice", "too-many"])
def test_bad_after_lists_are_refused_naming_after(stack: Stack, after: Any, says: str) -> None:
    before = requests.get(stack.url + "/api/jobs?limit=1", timeout=5,
                          headers=auth(TEST_OPS_TOKEN)).json()
    resp = post(stack.url, {"kind": "flow_step", "after": after})
    assert resp.status_code == 400 and says in resp.json()["error"], resp.text
    assert "after" in resp.json()["fields"]
    batch = requests.post(stack.url + "/api/batches", timeout=10,
                          json={"kind": "flow_step", "items": [{}], "after": after})
    assert batch.status_code == 400 and "after" in batch.json()["fields"]
    now = requests.get(stack.url + "/api/jobs?limit=1", timeout=5, headers=auth(TEST_OPS_TOKEN))
    assert now.json() == before, "nothing was stored"


def test_after_with_a_time_is_refused(stack: Stack) -> None:
    dep = start(stack, {"kind": "flow_step"})
    resp = post(stack.url, {"kind": "flow_step", "after": [dep], "delaySeconds": 60})
    assert resp.status_code == 400 and "after" in resp.json()["fields"]


def test_waiting_for_a_job_you_may_not_read_is_refused(stack: Stack, private_site: str) -> None:
    """JOB_VISIBILITY=owner: another session's job is as unknown as a missing one (400),
    its owner (and an operator) may wait for it."""
    alice, mallory = requests.Session(), requests.Session()
    secret = post(private_site, {"kind": "flow_step"}, alice).json()["id"]
    refused = post(private_site, {"kind": "flow_step", "after": [secret]}, mallory)
    assert refused.status_code == 400, refused.text
    assert refused.json() == {"error": f"after names an unknown job: {secret}",
                              "fields": {"after": f"unknown job {secret}"}}
    batch = mallory.post(private_site + "/api/batches", timeout=10,
                         json={"kind": "flow_step", "items": [{}], "after": [secret]})
    assert batch.status_code == 400 and "after" in batch.json()["fields"]
    assert post(private_site, {"kind": "flow_step", "after": [secret]}, alice).status_code == 202
    ops = requests.post(private_site + "/api/jobs", headers=auth(TEST_OPS_TOKEN), timeout=10,
                        json={"kind": "flow_step", "after": [secret]})
    assert ops.status_code == 202, ops.text


def test_a_dependency_that_ends_while_the_waiter_registers_is_never_missed(
        redis_client: redis.Redis) -> None:
    """The registration and the end race (threads, many times): every waiter settles."""
    store, waits = JobStore(redis_client, ttl=600), Waits(redis_client, ttl=600)
    for _round in range(40):
        dep, job = new_id(), new_id()
        store.create(dep, "flow_step")
        store.create(job, "flow_step", initial=WAITING, after=dep, waiting_for=dep)
        gate = threading.Barrier(2)
        settled: list[Any] = []

        def register(job: str = job, dep: str = dep, gate: threading.Barrier = gate,
                     settled: list[Any] = settled) -> None:
            gate.wait()
            settled.extend(waits.register([job], [dep]))

        def end(dep: str = dep, gate: threading.Barrier = gate,
                settled: list[Any] = settled) -> None:
            gate.wait()
            store.finish(dep, SUCCEEDED)
            settled.extend(waits.ended([(dep, SUCCEEDED)]))

        threads = [threading.Thread(target=register), threading.Thread(target=end)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [(s.job_id, s.outcome) for s in settled] == [(job, "ready")]
        state = store.get(job)
        assert state is not None and state.state == QUEUED
