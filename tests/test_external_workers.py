"""External workers (docs/workers.md): claims, leases, superseded attempts, batched
reports and their refusals. In-process app on a real Redis; the competition and
the SIGKILL tests run real gunicorn and real worker processes."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient

from shared import keys
from shared.config import Config, ConfigError
from shared.protocol import STATES
from shared.signing import sign_job_token
from shared.store import JobStore
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import (
    ROOT,
    TEST_OPS_TOKEN,
    TEST_PROGRESS_TOKEN,
    TEST_SECRET_KEY,
    TEST_WORKER_TOKEN,
    EventRecorder,
    Process,
    auth,
    final_state_received,
    free_port,
    stack_env,
    start_web,
    wait_until,
)

JOB = "6f1c2f5e-1c1b-4d52-8b0e-6f2b7c1a9d10"


@pytest.fixture
def short_lease_app(config: Config) -> Flask:
    """The site with a one-second lease and two attempts."""
    config.LEASE_SECONDS = 1
    config.MAX_ATTEMPTS = 2
    application = __import__("website").create_app(config)
    application.config["TESTING"] = True
    return application  # type: ignore[no-any-return]


CONTROL: dict[str, str] = {}  # job id -> the controlToken its creation answered


def start(client: FlaskClient, args: dict[str, Any] | None = None) -> str:
    resp = client.post("/api/jobs", json={"kind": "external", "args": args or {"n": 1}})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    CONTROL[resp.get_json()["id"]] = resp.get_json()["controlToken"]
    return str(resp.get_json()["id"])


def claim(client: FlaskClient, worker: str = "w1", wait: float = 0,
          token: str = TEST_WORKER_TOKEN) -> Any:
    return client.post("/api/workers/claim", headers=auth(token),
                       json={"kinds": ["external"], "worker": worker, "wait": wait})


def report(client: FlaskClient, body: Any, token: str) -> Any:
    return client.post("/api/progress", json=body, headers=auth(token))


def test_external_job_is_claimed_once_with_its_args(client: FlaskClient) -> None:
    job_id = start(client, {"file": "a.csv", "deep": {"list": [1, 2]}})
    assert client.get(f"/api/jobs/{job_id}").get_json()["state"] == "queued"
    got = claim(client)
    assert got.status_code == 200, got.get_data(as_text=True)
    body = got.get_json()
    assert body["jobId"] == job_id and body["kind"] == "external" and body["attempt"] == 1
    assert body["args"] == {"file": "a.csv", "deep": {"list": [1, 2]}}
    assert body["leaseSeconds"] == 30 and body["token"]
    assert claim(client, "w2").status_code == 204, "a job goes to one worker only"
    state = client.get(f"/api/jobs/{job_id}").get_json()
    assert state["state"] == "running" and "claimed by w1 (attempt 1)" in state["message"]
    done = report(client, {"jobId": job_id, "state": "succeeded", "result": {"ok": True}},
                  body["token"])
    assert done.status_code == 204 and done.headers["X-Jobcast-State"] == "succeeded"
    assert client.get(f"/api/jobs/{job_id}").get_json()["result"] == {"ok": True}


def test_claims_take_the_oldest_job_first(client: FlaskClient) -> None:
    ids = [start(client) for _ in range(3)]
    assert [claim(client).get_json()["jobId"] for _ in ids] == ids


def test_a_waiting_claim_gets_a_job_queued_meanwhile_or_204(client: FlaskClient) -> None:
    began = time.monotonic()
    assert claim(client, wait=0.5).status_code == 204
    assert time.monotonic() - began >= 0.45  # 90-100% of the wait


def test_claims_that_wait_together_come_back_spread_out(app: Flask) -> None:
    def one(_: int) -> float:
        began = time.monotonic()
        assert claim(app.test_client(), wait=1.0).status_code == 204
        return time.monotonic() - began

    with ThreadPoolExecutor(max_workers=16) as pool:
        took = list(pool.map(one, range(16)))
    assert min(took) >= 0.9, took
    assert max(took) - min(took) > 0.02, f"all gave up together: {took}"


def test_external_args_are_capped_at_16_kb(client: FlaskClient) -> None:
    resp = client.post("/api/jobs", json={"kind": "external", "args": {"x": "a" * 17000}})
    assert resp.status_code == 400 and "16384 bytes" in resp.get_data(as_text=True)


@pytest.mark.parametrize("headers", [{}, auth("wrong"), auth(TEST_PROGRESS_TOKEN),
                                     {"Authorization": "Basic abc"}])
def test_claim_and_heartbeat_refuse_without_the_worker_token(
        client: FlaskClient, headers: dict[str, str]) -> None:
    job_id = start(client)
    resp = client.post("/api/workers/claim", headers=headers,
                       json={"kinds": ["external"], "worker": "w1"})
    assert resp.status_code == 401 and resp.is_json
    beat = client.post("/api/workers/heartbeat", headers=headers, json={"jobIds": [job_id]})
    assert beat.status_code == 401
    assert client.get(f"/api/jobs/{job_id}").get_json()["state"] == "queued"


@pytest.mark.parametrize("body", [
    None, [], {"kinds": [], "worker": "w"}, {"kinds": ["demo"], "worker": "w"},
    {"kinds": ["nope"], "worker": "w"}, {"kinds": "external", "worker": "w"},
    {"kinds": ["external"]}, {"kinds": ["external"], "worker": "bad name"},
    {"kinds": ["external"], "worker": "w", "wait": 31}, {"kinds": ["external"], "worker": "w",
                                                        "wait": True},
    {"kinds": ["external"], "worker": "w", "wait": -1}])
def test_bad_claims_are_400(client: FlaskClient, body: Any) -> None:
    resp = client.post("/api/workers/claim", headers=auth(TEST_WORKER_TOKEN), json=body)
    assert resp.status_code == 400 and "error" in resp.get_json()


def test_cancel_reaches_the_worker_through_heartbeat_and_report(client: FlaskClient) -> None:
    """A cancel of a running job asks the worker to stop (#27: acknowledged, then
    enforced; tests/test_flow_cancel.py): its heartbeats and reports say so, and its
    ``cancelled`` report ends the job."""
    job_id = start(client)
    token = claim(client).get_json()["token"]
    beat = client.post("/api/workers/heartbeat", headers=auth(TEST_WORKER_TOKEN),
                       json={"jobIds": [job_id]})
    assert beat.get_json()["jobs"] == [{"jobId": job_id, "state": "running", "attempt": 1,
                                        "held": True}]
    assert client.post(f"/api/jobs/{job_id}/cancel",
                       headers=auth(CONTROL[job_id])).status_code == 200
    beat = client.post("/api/workers/heartbeat", headers=auth(TEST_WORKER_TOKEN),
                       json={"jobIds": [job_id, JOB]})
    assert beat.get_json()["jobs"] == [
        {"jobId": job_id, "state": "running", "attempt": 1, "held": True,
         "cancelRequested": True},
        {"jobId": JOB, "state": None, "attempt": None, "held": False}]
    late = report(client, {"jobId": job_id, "state": "running", "progress": 50}, token)
    assert late.status_code == 204 and late.headers["X-Jobcast-State"] == "running"
    assert late.headers["X-Jobcast-Cancel-Requested"] == "1"
    done = report(client, {"jobId": job_id, "state": "cancelled", "progress": 50}, token)
    assert done.status_code == 204 and done.headers["X-Jobcast-State"] == "cancelled"
    assert "X-Jobcast-Cancel-Requested" not in done.headers
    assert client.get(f"/api/jobs/{job_id}").get_json()["message"] == (
        "cancelled on request; the worker stopped")


def test_a_lapsed_lease_requeues_then_fails_and_refuses_the_old_attempt(
        short_lease_app: Flask) -> None:
    client = short_lease_app.test_client()
    job_id = start(client)
    first = claim(client, "w1").get_json()
    assert indexed(short_lease_app, job_id) == ["running"], "a claim moves the state index"
    assert report(client, {"jobId": job_id, "state": "running", "progress": 10, "seq": 5},
                  first["token"]).status_code == 204
    # No report for a second: the next claim's sweep puts it back, and hands it out again.
    second = wait_until(lambda: claim(client, "w2").get_json(), timeout=5, interval=0.2,
                        what="the job to come back")
    assert second["jobId"] == job_id and second["attempt"] == 2
    assert second["token"] != first["token"]
    stale = report(client, {"jobId": job_id, "state": "succeeded", "result": "old"},
                   first["token"])
    assert stale.status_code == 409 and "earlier attempt" in stale.get_json()["error"]
    state = client.get(f"/api/jobs/{job_id}").get_json()
    assert state["state"] == "running" and "claimed by w2 (attempt 2)" in state["message"]
    # The new attempt starts its seq again (the old attempt's seq 5 is forgotten).
    assert report(client, {"jobId": job_id, "state": "running", "progress": 5, "seq": 1},
                  second["token"]).headers["X-Jobcast-Applied"] == "1"
    # The last attempt lapses too: the job fails, saying why.
    failed = wait_until(lambda: (client.post("/api/workers/heartbeat",
                                             headers=auth(TEST_WORKER_TOKEN),
                                             json={"jobIds": []}) and
                                 client.get(f"/api/jobs/{job_id}").get_json()["state"]
                                 == "failed"), timeout=5, interval=0.2, what="the job to fail")
    assert failed
    message = client.get(f"/api/jobs/{job_id}").get_json()["message"]
    assert "w2 stopped reporting (lease lapsed) on attempt 2 of 2" in message
    assert indexed(short_lease_app, job_id) == ["failed"]
    redis_client = short_lease_app.extensions["jobcast.core"].client
    entries = redis_client.lrange(keys.job_timeline_key(job_id), 0, -1)
    assert [e.split()[0] for e in entries] == ["queued", "running", "queued", "running",
                                               "failed"], "claims and sweeps on the timeline"
    assert claim(client, "w3").status_code == 204


def test_one_sweep_at_a_time_per_process(app: Flask, client: FlaskClient) -> None:
    job_id = start(client)
    assert claim(client, "w1").get_json()["jobId"] == job_id
    redis_client = app.extensions["jobcast.core"].client
    redis_client.zadd(keys.EXTERNAL_LEASES, {job_id: 1.0})  # lapsed long ago
    sweeping = app.extensions["jobcast.core"].lifecycle._sweeping
    assert sweeping.acquire(blocking=False)  # as if another request were sweeping
    try:
        beat = client.post("/api/workers/heartbeat", headers=auth(TEST_WORKER_TOKEN),
                           json={"jobIds": []})
        assert beat.status_code == 200
        assert claim(client, "w2").status_code == 204  # neither swept beside it
        assert client.get(f"/api/jobs/{job_id}").get_json()["state"] == "running"
    finally:
        sweeping.release()
    again = claim(client, "w2").get_json()  # this claim sweeps: the job comes back
    assert again["jobId"] == job_id and again["attempt"] == 2


def indexed(app: Flask, job_id: str) -> list[str]:
    """The state indexes that list ``job_id``."""
    redis_client = app.extensions["jobcast.core"].client
    return [state for state in STATES
            if redis_client.zscore(keys.state_index(state), job_id) is not None]


def test_claims_and_lapsed_leases_move_a_batchs_totals(short_lease_app: Flask) -> None:
    from shared.batches import batch_totals

    client = short_lease_app.test_client()
    redis_client = short_lease_app.extensions["jobcast.core"].client
    resp = client.post("/api/batches", json={
        "kind": "external", "items": [{"n": 1}, {"n": 2}],
        "onComplete": {"kind": "external", "args": {"then": True}}})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    batch_id = resp.get_json()["batchId"]
    rq_queue = short_lease_app.extensions["jobcast.core"].lifecycle.queue
    assert rq_queue.count == 0  # external children go to the claim queue, never to RQ

    def counts() -> dict[str, int]:
        totals = batch_totals(redis_client, batch_id)
        return {k: v for k, v in totals["counts"].items() if v} | {"done": totals["done"]}

    first = claim(client, "w1").get_json()
    assert counts() == {"queued": 1, "running": 1, "done": 0}
    assert report(client, {"jobId": first["jobId"], "state": "succeeded", "result": 1},
                  first["token"]).status_code == 204
    claim(client, "w2")
    assert counts() == {"running": 1, "succeeded": 1, "done": 1}

    def heartbeat_then(expected: dict[str, int]) -> bool:
        client.post("/api/workers/heartbeat", headers=auth(TEST_WORKER_TOKEN),
                    json={"jobIds": []})  # sweeps
        return counts() == expected

    wait_until(lambda: heartbeat_then({"queued": 1, "succeeded": 1, "done": 1}), timeout=5,
               interval=0.2, what="the lapsed job queued again in the totals")
    claim(client, "w3")  # its last attempt
    wait_until(lambda: heartbeat_then({"failed": 1, "succeeded": 1, "done": 2}), timeout=5,
               interval=0.2, what="the lapsed last attempt failed in the totals")
    totals = batch_totals(redis_client, batch_id)
    assert totals["complete"] and totals["completeJob"], "onComplete started once"


def test_reports_and_heartbeats_renew_the_lease(short_lease_app: Flask) -> None:
    client = short_lease_app.test_client()
    redis_client = short_lease_app.extensions["jobcast.core"].client
    job_id = start(client)
    got = claim(client, "w1").get_json()
    deadline = redis_client.zscore(keys.EXTERNAL_LEASES, job_id)
    for i in range(6):  # reports and heartbeats in turn each move the deadline on
        asked = time.time()
        if i % 2:
            assert report(client, {"jobId": job_id, "state": "running", "progress": i},
                          got["token"]).status_code == 204
        else:
            beat = client.post("/api/workers/heartbeat", headers=auth(TEST_WORKER_TOKEN),
                               json={"jobIds": [{"jobId": job_id, "attempt": 1}]})
            assert beat.get_json()["jobs"][0]["held"] is True
        renewed = redis_client.zscore(keys.EXTERNAL_LEASES, job_id)
        assert renewed > deadline and renewed >= asked + 1.0  # LEASE_SECONDS from then
        deadline = renewed
    assert client.get(f"/api/jobs/{job_id}").get_json()["state"] == "running"
    # a heartbeat for another attempt renews nothing
    beat = client.post("/api/workers/heartbeat", headers=auth(TEST_WORKER_TOKEN),
                       json={"jobIds": [{"jobId": job_id, "attempt": 2}]})
    assert beat.get_json()["jobs"][0]["held"] is False
    assert redis_client.zscore(keys.EXTERNAL_LEASES, job_id) == deadline


def test_retry_of_an_external_job_queues_it_again(client: FlaskClient) -> None:
    job_id = start(client)
    token = claim(client).get_json()["token"]
    report(client, {"jobId": job_id, "state": "failed", "message": "boom"}, token)
    assert client.post(f"/api/jobs/{job_id}/retry",
                       headers=auth(CONTROL[job_id])).status_code == 202
    again = claim(client).get_json()
    assert again["jobId"] == job_id and again["attempt"] == 2
    assert report(client, {"jobId": job_id, "state": "running", "progress": 1},
                  token).status_code == 409


def test_a_batch_applies_good_items_and_answers_each(client: FlaskClient) -> None:
    one, two = start(client), start(client)
    tok_one = claim(client).get_json()["token"]
    claim(client)
    batch = [
        {"jobId": one, "state": "running", "progress": 10, "log": ["a"]},
        {"jobId": one, "state": "running", "progress": 10, "log": []},  # changes nothing
        {"jobId": one, "state": "bogus", "progress": 10},
        {"jobId": JOB, "state": "running", "progress": 1},  # not one's: refused, not looked up
        {"jobId": two, "state": "running", "progress": 20},  # tok_one is not two's token
        {"jobId": one, "state": "succeeded", "result": 1},
    ]
    resp = report(client, batch, tok_one)
    assert resp.status_code == 200
    results = resp.get_json()["results"]
    assert [(r["status"], r["applied"], r["state"]) for r in results] == [
        (204, True, "running"), (204, False, "running"), (400, False, None),
        (401, False, None), (401, False, None), (204, True, "succeeded")]
    assert client.get(f"/api/jobs/{two}").get_json()["progress"] == 0
    assert client.get(f"/api/jobs/{one}/log").get_json()["lines"][0]["text"] == "a"
    shared = report(client, [{"jobId": two, "state": "running", "progress": 20},
                             {"jobId": JOB, "state": "running", "progress": 1}],
                    TEST_WORKER_TOKEN)
    assert [r["status"] for r in shared.get_json()["results"]] == [204, 404]


def test_a_batch_pushes_each_applied_report_as_if_it_came_alone(app: Flask) -> None:
    from website.extensions import socketio

    client = app.test_client()
    one, two = start(client), start(client)
    claim(client), claim(client)
    watcher = socketio.test_client(app, query_string=f"jobId={one}")
    other = socketio.test_client(app, query_string=f"jobId={two}")
    watcher.get_received(), other.get_received()
    batch = [{"jobId": one, "state": "running", "progress": 10, "message": "a", "log": ["x"]},
             {"jobId": two, "state": "running", "progress": 30},
             {"jobId": one, "state": "running", "progress": 10, "message": "a"},  # a repeat
             {"jobId": one, "state": "bogus"},
             {"jobId": one, "state": "running", "progress": 20, "message": "b"}]
    assert report(client, batch, TEST_WORKER_TOKEN).status_code == 200
    seen = [(m["name"], m["args"][0].get("progress"), m["args"][0].get("message"))
            for m in watcher.get_received()]
    assert seen == [("jobLog", None, None), ("updateProgress", 10, "a"),
                    ("updateProgress", 20, "b")], "applied ones only, in order, log first"
    assert [(m["name"], m["args"][0]["progress"]) for m in other.get_received()] == [
        ("updateProgress", 30)]
    watcher.disconnect(), other.disconnect()


@pytest.mark.parametrize("body", [[], [1], [{"jobId": JOB}] * 101])
def test_bad_batches_are_400(client: FlaskClient, body: Any) -> None:
    assert report(client, body, TEST_PROGRESS_TOKEN).status_code == 400


def test_a_batch_with_only_refused_items_is_401(client: FlaskClient) -> None:
    job_id = start(client)
    resp = report(client, [{"jobId": job_id, "state": "running", "progress": 1}], "wrong")
    assert resp.status_code == 401
    assert client.post("/api/progress", json=[{"jobId": job_id}]).status_code == 401


def gauge(client: FlaskClient) -> float:
    """``jobcast_waiting_claims`` from the in-process app's ``/metrics`` (operators only)."""
    assert client.get("/metrics").status_code == 401
    text = client.get("/metrics", headers=auth(TEST_OPS_TOKEN)).get_data(as_text=True)
    found = re.search(r"^jobcast_waiting_claims (\S+)$", text, re.M)
    assert found, "jobcast_waiting_claims not on /metrics"
    return float(found.group(1))


def test_claims_beyond_claim_max_waiting_get_503_and_the_gauge_counts_waiters(
        config: Config) -> None:
    from concurrent.futures import ThreadPoolExecutor

    config.CLAIM_MAX_WAITING = 1
    application = __import__("website").create_app(config)
    application.config["TESTING"] = True
    client = application.test_client()
    assert gauge(client) == 0
    with ThreadPoolExecutor(max_workers=1) as pool:
        patient = pool.submit(lambda: claim(application.test_client(), "patient", wait=10))
        wait_until(lambda: gauge(client) == 1, timeout=5, what="one claim waiting")
        refused = claim(client, "late", wait=5)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
        assert "too many claims" in refused.get_json()["error"]
        assert claim(client, "quick", wait=0).status_code == 204, "no wait: never refused"
        job_id = start(client)
        assert patient.result(timeout=10).get_json()["jobId"] == job_id
    assert gauge(client) == 0


def test_claim_max_waiting_must_leave_http_room(config: Config) -> None:
    with pytest.raises(ConfigError, match="CLAIM_MAX_WAITING"):
        Config(environ={"WORKER_CONNECTIONS": "100", "SOCKETIO_MAX_CONNECTIONS": "90",
                        "CLAIM_MAX_WAITING": "10", "JOBCAST_ENV": "development"})
    assert Config(environ={"WORKER_CONNECTIONS": "100", "SOCKETIO_MAX_CONNECTIONS": "90",
                           "CLAIM_MAX_WAITING": "9", "JOBCAST_ENV": "development"}
                  ).CLAIM_MAX_WAITING == 9


# -- the real stack: gunicorn + eventlet, the reference shell and Node workers -------------

@pytest.fixture(scope="module")
def lease_stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A real stack with a two-second lease and no creation rate limits."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("lease-redis"), LEASE_SECONDS="2",
                          RATE_LIMIT="0", RATE_LIMIT_GLOBAL="0")
    yield running
    stop_stack(running)


def external_worker(stack: Stack, which: str, name: str, delay: str, once: bool = False
                    ) -> Process:
    """A reference worker (examples/) as a process whose output goes to a log file."""
    cmd = (["/bin/sh", str(ROOT / "examples" / "worker.sh"), name] if which == "shell"
           else [shutil.which("node") or "node", str(ROOT / "examples" / "worker.mjs"), name])
    env = {"PATH": "/usr/bin:/bin", "JOBCAST_URL": stack.url, "WORKER_TOKEN": TEST_WORKER_TOKEN,
           "STEP_DELAY": delay, **({"ONCE": "1"} if once else {})}
    return Process(name, cmd, env, stack.log_dir).start()


def post_job(stack: Stack, n: int) -> str:
    resp = requests.post(stack.url + "/api/jobs", json={"kind": "external", "args": {"n": n}},
                         timeout=5)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def test_a_killed_worker_loses_its_job_to_another(lease_stack: Stack) -> None:
    job_id = post_job(lease_stack, 3)
    watcher = EventRecorder(lease_stack.url, job_id)
    slow = external_worker(lease_stack, "shell", "doomed", "60")
    try:
        wait_until(lambda: lease_stack.job_state(job_id).get("current") == 1, timeout=20,
                   what="the first step")
        slow.kill()  # SIGKILL mid-job: no more reports, the lease lapses
        watcher.wait_for(lambda ev: any(name == "updateProgress" and p["state"] == "queued"
                                        and "lease lapsed" in p["message"]
                                        for name, p in ev), timeout=15,
                         what="the job to be queued again")
        page = requests.get(f"{lease_stack.url}/jobs/{job_id}", timeout=5).text
        line = re.search(r"<p id=\"status-line\".*?</p>", page, re.S)
        assert line and "doomed stopped reporting (lease lapsed); queued again for attempt 2" \
            in line.group(0), line
        stale = requests.post(lease_stack.url + "/api/progress",
                              json={"jobId": job_id, "state": "succeeded", "result": "stale"},
                              headers=auth(sign_job_token(TEST_SECRET_KEY, job_id, 1)),
                              timeout=5)
        assert stale.status_code == 409, stale.text
        assert lease_stack.job_state(job_id)["state"] == "queued"
        rescue = external_worker(lease_stack, "node", "rescuer", "0.05", once=True)
        rescue.proc.wait(30)  # type: ignore[union-attr]
        watcher.wait_for(final_state_received(), timeout=15, what="the final state")
    finally:
        watcher.close()
        slow.stop()
    messages = [p["message"] for p in watcher.payloads("updateProgress")]
    assert "claimed by rescuer (attempt 2)" in messages
    final = lease_stack.job_state(job_id)
    assert final["state"] == "succeeded" and final["result"] == {"steps": 3, "worker": "rescuer"}


def scripts_run(client: redis.Redis) -> int:
    """How many EVALSHA calls Redis has served."""
    stats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def test_waiting_claims_hold_no_redis_connection_and_block_nothing(lease_stack: Stack) -> None:
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    client = redis.Redis.from_url(lease_stack.env["REDIS_URL"], decode_responses=True)

    def blocking() -> int:
        return sum(c["cmd"] in ("blpop", "brpop", "blmove", "bzpopmin", "xread")
                   for c in client.client_list())


    def wait_claim(i: int) -> requests.Response:
        got = requests.post(lease_stack.url + "/api/workers/claim", headers=auth(
            TEST_WORKER_TOKEN), json={"kinds": ["external"], "worker": f"waiter-{i}",
                                      "wait": 6}, timeout=20)
        if got.status_code == 200:  # finish it at once, before its lease could lapse
            done = requests.post(lease_stack.url + "/api/progress", headers=auth(
                got.json()["token"]), json={"jobId": got.json()["jobId"],
                                            "state": "succeeded"}, timeout=5)
            assert done.status_code == 204
        return got

    with ThreadPoolExecutor(max_workers=30) as pool:
        futures = [pool.submit(wait_claim, i) for i in range(30)]
        wait_until(lambda: waiting_claims(lease_stack) == 30, timeout=10,
                   what="30 claims waiting (jobcast_waiting_claims)")
        assert not any(f.done() for f in futures), "the claims wait"
        assert requests.get(lease_stack.url + "/healthz", timeout=3).status_code in (200, 503)
        assert requests.get(lease_stack.url + "/", timeout=3).status_code == 200
        # No claim blocks in Redis (no BLPOP per request): at most idle pooled
        # connections, and one subscriber, the web process's listener.
        assert blocking() <= 1, "at most the RQ worker's BLPOP on its own queue"
        assert client.pubsub_numsub(keys.EXTERNAL_CHANNEL) == [(keys.EXTERNAL_CHANNEL, 1)]
        scripts_before = scripts_run(client)
        job_id = post_job(lease_stack, 1)
        wait(futures, timeout=10, return_when=FIRST_COMPLETED)
        # Creating the job, the pops of the claim it woke and of the one that claim
        # woke in turn, the winner's report, maybe a lease sweep: not one pop per waiter.
        assert scripts_run(client) - scripts_before <= 10, "a job wakes one claim, not all"
        answers = [f.result() for f in futures]
    got = [a for a in answers if a.status_code == 200]
    assert len(got) == 1 and got[0].json()["jobId"] == job_id, [(g.json(), job_id) for g in got]
    assert sorted({a.status_code for a in answers}) == [200, 204]
    assert waiting_claims(lease_stack) == 0, "every claim answered: none counted"
    client.close()


@pytest.fixture(scope="module")
def gevent_web(lease_stack: Stack) -> Iterator[Stack]:
    """A second web process on the lease stack's Redis, under gunicorn's gevent worker."""
    env = stack_env(lease_stack.env["REDIS_URL"], free_port(), LEASE_SECONDS="2",
                    RATE_LIMIT="0", RATE_LIMIT_GLOBAL="0", ASYNC_MODE="gevent")
    web = start_web(env, lease_stack.log_dir, name="web-gevent-claims")
    yield Stack(lease_stack.redis, web, lease_stack.worker, env, lease_stack.log_dir)
    web.stop()


@pytest.mark.parametrize("mode", ["eventlet", "gevent"])
def test_a_claim_whose_client_went_away_takes_no_job(mode: str, request: pytest.FixtureRequest
                                                     ) -> None:
    import socket

    site: Stack = request.getfixturevalue("lease_stack" if mode == "eventlet" else "gevent_web")
    host, port = site.url.removeprefix("http://").split(":")
    body = json.dumps({"kinds": ["external"], "worker": "ghost", "wait": 10}).encode()
    ghost = socket.create_connection((host, int(port)))
    ghost.sendall(b"POST /api/workers/claim HTTP/1.1\r\nHost: " + f"{host}:{port}".encode()
                  + b"\r\n"
                  b"Authorization: Bearer " + TEST_WORKER_TOKEN.encode() + b"\r\n"
                  b"Content-Type: application/json\r\nContent-Length: "
                  + str(len(body)).encode() + b"\r\n\r\n" + body)
    wait_until(lambda: waiting_claims(site) == 1, timeout=10, what="the ghost's claim waiting")
    ghost.close()
    job_id = post_job(site, 1)
    got = claim_http(site, "alive", wait=5)
    assert got.status_code == 200 and got.json()["jobId"] == job_id
    assert got.json()["attempt"] == 1, "the vanished claim did not take the job first"
    wait_until(lambda: waiting_claims(site) == 0, timeout=10, what="the ghost's claim to end")


def waiting_claims(stack: Stack) -> float:
    """The web process's ``jobcast_waiting_claims`` gauge (``/metrics``, operators only)."""
    assert requests.get(stack.url + "/metrics", timeout=5).status_code == 401
    text = requests.get(stack.url + "/metrics", headers=auth(TEST_OPS_TOKEN), timeout=5).text
    found = re.search(r"^jobcast_waiting_claims (\S+)$", text, re.M)
    assert found, "jobcast_waiting_claims not on /metrics"
    return float(found.group(1))


def claim_http(stack: Stack, worker: str, wait: float) -> requests.Response:
    return requests.post(stack.url + "/api/workers/claim", headers=auth(TEST_WORKER_TOKEN),
                         json={"kinds": ["external"], "worker": worker, "wait": wait},
                         timeout=wait + 10)


def test_two_workers_compete_for_200_jobs_each_done_once(lease_stack: Stack) -> None:
    # Last on this stack: a stopped worker's claim may still wait on the server.
    workers = [external_worker(lease_stack, "shell", f"rival-{i}", "0") for i in (1, 2)]
    store = JobStore(redis.Redis.from_url(lease_stack.env["REDIS_URL"], decode_responses=True))
    try:
        ids = [post_job(lease_stack, 1) for _ in range(200)]

        def all_done() -> bool:
            return all(s is not None and s.state == "succeeded"
                       for s in (store.get(i) for i in ids))

        wait_until(all_done, timeout=120, interval=0.5, what="200 jobs to succeed")
        ours = set(ids)  # (a job an earlier test left claimed comes back and is done too)

        def logged_done() -> list[str]:
            done = [re.findall(r"^done (\S+)$", w.log_tail(10**6), re.M) for w in workers]
            return [i for i in done[0] + done[1] if i in ours]

        # a worker logs "done" once its last report is answered, a moment after the
        # store has the job succeeded
        wait_until(lambda: set(logged_done()) == ours, timeout=30, interval=0.2,
                   what="both workers to log each job done")
    finally:
        for worker in workers:
            worker.stop()
    done = [re.findall(r"^done (\S+)$", w.log_tail(10**6), re.M) for w in workers]
    finished = [i for i in done[0] + done[1] if i in ours]
    assert sorted(finished) == sorted(ids), (
        "each job done once, none lost",
        {i for i in finished if finished.count(i) > 1}, set(ids) - set(finished),
        [w.log_tail(2000) for w in workers])
    assert done[0] and done[1], "both workers got jobs"
    for job_id in ids:
        state = store.get(job_id)
        assert state is not None and state.attempt == 1
        assert state.result["worker"] in ("rival-1", "rival-2")
