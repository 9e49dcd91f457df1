"""Every queue and worker (shared/fleet.py, website/ops/fleet.py): external workers by
the name they claim with, RQ workers with their job, every queue's depth on the
dashboard and in /metrics, gone then dropped; the job page's "no worker" words; the
home page's External form with JSON arguments. In process on a real Redis; a real RQ
worker for the RQ part."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from shared import keys
from shared.config import Config
from shared.fleet import Fleet, RqSeen
from tests.support import (
    TEST_OPS_TOKEN,
    TEST_WORKER_TOKEN,
    auth,
    csrf_token_in,
    stack_env,
    start_worker,
    wait_until,
)
from website.auth.operators import dashboard_token

OPS = auth(TEST_OPS_TOKEN)


@pytest.fixture
def fleet_app(config: Config) -> Flask:
    """The site with a two-second WORKER_GONE_AFTER and lease (and a ten-second drop)."""
    config.WORKER_GONE_AFTER = 2
    config.LEASE_SECONDS = 2
    config.WORKER_DROP_AFTER = 10
    application = __import__("website").create_app(config)
    application.config["TESTING"] = True
    return application  # type: ignore[no-any-return]


@pytest.fixture
def web(fleet_app: Flask) -> FlaskClient:
    return fleet_app.test_client()


def start_external(client: FlaskClient, args: dict[str, Any] | None = None) -> str:
    resp = client.post("/api/jobs", json={"kind": "external", "args": args or {"n": 1}})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    return str(resp.get_json()["id"])


def claim(client: FlaskClient, worker: str) -> Any:
    return client.post("/api/workers/claim", headers=auth(TEST_WORKER_TOKEN),
                       json={"kinds": ["external"], "worker": worker, "wait": 0})


def fleet_of(client: FlaskClient) -> dict[str, Any]:
    resp = client.get("/api/ops/fleet", headers=OPS)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()  # type: ignore[no-any-return]


def worker_named(snap: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((w for w in snap["workers"] if w["name"] == name), None)


def queue_named(snap: dict[str, Any], name: str) -> dict[str, Any]:
    return next(q for q in snap["queues"] if q["name"] == name)


def metric(text: str, sample: str) -> float:
    found = re.search(r"^" + re.escape(sample) + r" (\S+)$", text, re.M)
    assert found, f"{sample} not in:\n{text}"
    return float(found.group(1))


def test_external_worker_is_listed_by_name_with_its_job_and_lease_then_gone(
        web: FlaskClient) -> None:
    job_id = start_external(web)
    snap = fleet_of(web)
    assert queue_named(snap, "ext:external")["depth"] == 1
    assert snap["queueDepth"] >= 1
    text = web.get("/metrics", headers=OPS).get_data(as_text=True)
    assert metric(text, 'jobcast_queue_depth{queue="ext:external"}') == 1
    assert metric(text, 'jobcast_queue_depth{queue="jobcast-webhooks"}') == 0

    got = claim(web, "node-7")
    assert got.status_code == 200 and got.get_json()["jobId"] == job_id
    snap = fleet_of(web)
    assert queue_named(snap, "ext:external")["depth"] == 0
    listed = worker_named(snap, "node-7")
    assert listed is not None, snap
    assert listed["family"] == "external" and listed["status"] == "busy"
    assert listed["job"] == job_id
    assert listed["leaseUntil"] > time.time()
    assert snap["workersOnline"] >= 1
    text = web.get("/metrics", headers=OPS).get_data(as_text=True)
    assert metric(text, "jobcast_external_workers") == 1

    page = web.get("/dashboard", headers=OPS).get_data(as_text=True)
    assert 'data-worker="node-7"' in page and job_id[:8] in page

    # Its lease lapses (no report: 2 s), then unseen for WORKER_GONE_AFTER (2 s): gone.
    wait_until(lambda: worker_named(fleet_of(web), "node-7")["status"] == "gone",  # type: ignore[index]
               timeout=6, interval=0.2, what="the worker to be shown gone")
    snap = fleet_of(web)
    assert snap["workersOnline"] == sum(1 for w in snap["workers"] if w["status"] != "gone")


def test_heartbeat_keeps_a_worker_seen_by_its_claim_name_or_the_one_it_gives(
        web: FlaskClient, redis_client: redis.Redis) -> None:
    first, second = start_external(web), start_external(web)
    assert claim(web, "sh-1").status_code == 200
    assert claim(web, "sh-2").status_code == 200
    before = {w["name"]: w["lastSeen"] for w in fleet_of(web)["workers"]}
    beat = web.post("/api/workers/heartbeat", headers=auth(TEST_WORKER_TOKEN),
                    json={"jobIds": [first]})  # no name: the one the job was claimed with
    assert beat.status_code == 200, beat.get_data(as_text=True)
    named = web.post("/api/workers/heartbeat", headers=auth(TEST_WORKER_TOKEN),
                     json={"jobIds": [second], "worker": "sh-2"})
    assert named.status_code == 200
    after = {w["name"]: w for w in fleet_of(web)["workers"]}
    assert after["sh-1"]["lastSeen"] > before["sh-1"] and after["sh-1"]["job"] == first
    assert after["sh-2"]["lastSeen"] > before["sh-2"] and after["sh-2"]["job"] == second
    bad = web.post("/api/workers/heartbeat", headers=auth(TEST_WORKER_TOKEN),
                   json={"jobIds": [second], "worker": "not a name!"})
    assert bad.status_code == 400 and "worker" in bad.get_json()["error"]
    # The job ends: the worker holds nothing any more.
    done = web.post("/api/progress", headers=auth(claim_token(redis_client, second)),
                    json={"jobId": second, "state": "succeeded", "progress": 100})
    assert done.status_code in (200, 204), done.get_data(as_text=True)
    assert worker_named(fleet_of(web), "sh-2")["job"] == ""  # type: ignore[index]


def claim_token(client: redis.Redis, job_id: str) -> str:
    from shared.signing import sign_job_token
    from tests.support import TEST_SECRET_KEY
    attempt = int(client.hget(keys.job_key(job_id), "attempt") or 1)  # type: ignore[arg-type]
    return sign_job_token(TEST_SECRET_KEY, job_id, attempt)


def test_fleet_endpoint_refuses_all_but_operators(web: FlaskClient, fleet_app: Flask) -> None:
    assert web.get("/api/ops/fleet").status_code == 401
    assert web.get("/api/ops/fleet", headers=auth("wrong")).status_code == 401
    assert web.get("/api/ops/fleet", headers=auth(TEST_WORKER_TOKEN)).status_code == 401
    assert web.get("/api/ops/fleet",
                   headers={"X-Dashboard-Token": "forged"}).status_code == 401
    with fleet_app.test_request_context():
        token = dashboard_token()
    assert web.get("/api/ops/fleet", headers={"X-Dashboard-Token": token}).status_code == 200
    assert web.get("/api/ops/fleet", headers=OPS).status_code == 200


def test_workers_are_dropped_later_and_the_record_is_bounded(redis_client: redis.Redis) -> None:
    fleet = Fleet(redis_client, "jobcast", ["external"], gone_after=5, drop_after=50)
    fleet.max_workers = 3
    fleet.claiming("old", ["external"], now=1000.0)
    for index in range(4):
        fleet.claiming(f"w{index}", ["external"], now=1040.0 + index)
    listed = [w.name for w in fleet.workers([], now=1046.0)]
    assert listed == ["w3", "w2", "w1"]  # "old" and "w0" went: the cap keeps 3
    assert redis_client.zcard(keys.FLEET_WORKERS) == 3
    assert not redis_client.exists(keys.FLEET_WORKER_PREFIX + "ext:old")
    assert {w.status for w in fleet.workers([], now=1046.0)} == {"idle"}
    assert {w.status for w in fleet.workers([], now=1060.0)} == {"gone"}
    fleet.claiming("new", ["external"], now=1100.0)  # 50 s later the rest are dropped
    assert [w.name for w in fleet.workers([], now=1100.0)] == ["new"]
    assert fleet.last_claims(["external", "other"]) == {"external": 1100.0, "other": None}


def test_rq_workers_are_listed_with_their_job_then_gone(redis_client: redis.Redis) -> None:
    fleet = Fleet(redis_client, "jobcast", [], gone_after=5, drop_after=50)
    live = [RqSeen("rq-a", "busy", "job-1", 1000.0, ("jobcast-high", "jobcast"))]
    fleet.note_rq(live)
    [seen] = fleet.workers(live, now=1001.0)
    assert (seen.name, seen.family, seen.status, seen.job) == ("rq-a", "rq", "busy", "job-1")
    [left] = fleet.workers([], now=1002.0)  # RQ no longer lists it
    assert (left.status, left.job) == ("gone", "")


def test_a_real_rq_worker_is_listed_with_its_current_job(
        web: FlaskClient, redis_url: str, log_dir: Path) -> None:
    env = stack_env(redis_url, 9, DEMO_STEP_DELAY="0.3", WORKER_EMIT="direct",
                    SOCKETIO_MESSAGE_QUEUE=redis_url)
    worker = start_worker(env, log_dir, name="fleet-rq")
    try:
        resp = web.post("/api/jobs", json={"kind": "demo", "args": {}})
        assert resp.status_code == 202
        job_id = resp.get_json()["id"]

        def busy_with_it() -> bool:
            return any(w["family"] == "rq" and w["job"] == job_id and w["status"] == "busy"
                       for w in fleet_of(web)["workers"])
        wait_until(busy_with_it, timeout=20, interval=0.2, what="the RQ worker on its job")
    finally:
        worker.stop()
    wait_until(lambda: all(w["status"] == "gone" for w in fleet_of(web)["workers"]
                           if w["family"] == "rq"), timeout=10, what="the RQ worker gone")


def test_a_queued_job_says_when_no_worker_could_take_it(web: FlaskClient) -> None:
    first, second = start_external(web), start_external(web)
    words = "No worker has claimed external jobs in the last 2 s."
    assert web.get(f"/api/jobs/{first}").get_json()["noWorker"] == words
    page = web.get(f"/jobs/{first}").get_data(as_text=True)
    assert words in page
    assert claim(web, "taker").status_code == 200  # takes the first: the second waits on
    state = web.get(f"/api/jobs/{second}").get_json()
    assert state["state"] == "queued" and state["noWorker"] is None
    assert 'id="no-worker" aria-live="polite" hidden' in web.get(f"/jobs/{second}").get_data(
        as_text=True)
    wait_until(lambda: web.get(f"/api/jobs/{second}").get_json()["noWorker"] == words,
               timeout=6, interval=0.2, what="the words to come back")
    demo = web.post("/api/jobs", json={"kind": "demo", "args": {}}).get_json()["id"]
    assert web.get(f"/api/jobs/{demo}").get_json()["noWorker"] == (
        "No worker is listening on its queue (jobcast): it waits until one starts.")


def test_home_external_form_takes_json_arguments(web: FlaskClient) -> None:
    home = web.get("/").get_data(as_text=True)
    assert 'name="args"' in home and 'id="f-external-args"' in home
    token = csrf_token_in(home)
    for raw, said in (("{not json", "not valid JSON (line 1, column 2)"),
                      ("[1, 2]", "must be a JSON object"),
                      ('{"x": "' + "a" * 17_000 + '"}', "at most 16384 bytes")):
        refused = web.post("/jobs", data={"csrf_token": token, "kind": "external", "args": raw})
        assert refused.status_code == 400, raw[:20]
        text = refused.get_data(as_text=True)
        assert said in text, text[:2000]
        assert 'aria-invalid="true"' in text or said.startswith("at most")
    made = web.post("/jobs", data={"csrf_token": token, "kind": "external",
                                   "args": '{"file": "a.csv", "n": [1, 2]}'})
    assert made.status_code == 303, made.get_data(as_text=True)[:500]
    job_id = made.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    got = claim(web, "form-taker").get_json()
    assert got["jobId"] == job_id and got["args"] == {"file": "a.csv", "n": [1, 2]}


def test_a_worker_busy_on_a_leased_job_is_not_gone(redis_client: redis.Redis) -> None:
    """Reports renew the lease without noting the worker: a live lease keeps it busy."""
    fleet = Fleet(redis_client, "jobcast", ["external"], gone_after=5, drop_after=500,
                  lease_seconds=30)
    fleet.claiming("long-runner", ["external"], "job-9", now=1000.0)
    redis_client.hset(keys.job_key("job-9"), "worker", "long-runner")
    redis_client.zadd(keys.EXTERNAL_LEASES, {"job-9": 1200.0})  # renewed at 1170 by a report
    [busy] = fleet.workers([], now=1180.0)
    assert (busy.status, busy.job, busy.lease_until, busy.last_seen) == (
        "busy", "job-9", 1200.0, 1170.0)
    [lapsed] = fleet.workers([], now=1201.0)  # the lease lapsed: nothing held, unseen
    assert (lapsed.status, lapsed.job, lapsed.lease_until) == ("gone", "", None)
    redis_client.hset(keys.job_key("job-9"), "worker", "another")  # claimed again by another
    [other] = fleet.workers([], now=1180.0)
    assert (other.status, other.job) == ("gone", "")
