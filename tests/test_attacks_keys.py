"""Attacks on API keys (issue #26, part 6), in process over a real Redis and RQ queue:
another key's jobs, a revoked or made-up key, a key used as a worker token, a key
that names another owner or asks to go first (a priority above its kind's: operators
only, #27). Each is refused and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue

from shared import keys
from shared.config import Config
from shared.protocol import seq_limit
from tests.support import TEST_OPS_TOKEN, auth
from website import create_app
from website.extensions import socketio

OPS = auth(TEST_OPS_TOKEN)
MADE_UP = "jc_" + "A" * 43


def make_app(config: Config, **overrides: object) -> Flask:
    for name, value in overrides.items():
        setattr(config, name, value)
    app = create_app(config)
    app.config["TESTING"] = True
    return app


def new_key(client: FlaskClient, name: str) -> dict[str, Any]:
    resp = client.post("/api/keys", headers=OPS, json={"name": name})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()  # type: ignore[no-any-return]


def start(client: FlaskClient, key: str, **body: Any) -> dict[str, Any]:
    resp = client.post("/api/jobs", headers=auth(key), json=body)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    return resp.get_json()  # type: ignore[no-any-return]


def rq_queue(app: Flask, priority: str = "normal") -> Queue:
    name = app.config["QUEUE_NAME"] + ("" if priority == "normal" else f"-{priority}")
    return Queue(name, connection=redis.Redis.from_url(app.config["REDIS_URL"]))


@pytest.mark.parametrize("visibility", ["link", "owner"])
def test_a_key_cannot_touch_another_keys_jobs(config: Config, redis_client: redis.Redis,
                                              visibility: str) -> None:
    app = make_app(config, JOB_VISIBILITY=visibility)
    ops = app.test_client()
    alice, mallory = new_key(ops, "alice")["key"], new_key(ops, "mallory")["key"]
    program = app.test_client(use_cookies=False)
    job = start(program, alice)
    cancelled = start(program, alice)
    assert program.post(f"/api/jobs/{cancelled['id']}/cancel", headers=auth(alice)
                        ).status_code == 200
    batch = program.post("/api/batches", headers=auth(alice),
                         json={"kind": "demo", "items": [{}, {}]}).get_json()
    refused = 404 if visibility == "owner" else 403
    for path in (f"/api/jobs/{job['id']}/cancel", f"/api/jobs/{cancelled['id']}/retry"):
        resp = program.post(path, headers=auth(mallory))
        assert resp.status_code == refused, (path, resp.get_data(as_text=True))
    resp = program.post(f"/api/batches/{batch['batchId']}/cancel", headers=auth(mallory))
    assert resp.status_code == 403
    reading = program.get(f"/api/jobs/{job['id']}", headers=auth(mallory)).status_code
    assert reading == (404 if visibility == "owner" else 200)
    # a key's text as another job's controlToken, or for a job of a session, is no better
    browser = app.test_client()
    session_job = browser.post("/api/jobs").get_json()["id"]
    assert program.post(f"/api/jobs/{session_job}/cancel",
                        headers=auth(mallory)).status_code == refused
    assert redis_client.hget(keys.job_key(job["id"]), "state") == "queued"
    assert redis_client.hget(keys.job_key(cancelled["id"]), "state") == "cancelled"
    assert redis_client.hget(keys.job_key(session_job), "state") == "queued"
    assert redis_client.hget(keys.batch_key(batch["batchId"]), "cancelled") in (None, "0")
    assert job["id"] in rq_queue(app).job_ids
    if visibility == "owner":
        spy = socketio.test_client(app, query_string=f"jobId={job['id']}",
                                   headers=auth(mallory))
        assert not spy.is_connected()
        spy = socketio.test_client(app)
        assert spy.emit("subscribe", {"jobId": job["id"], "controlToken": mallory},
                        callback=True)["ok"] is False


def test_a_revoked_key_is_refused_with_401_everywhere(config: Config,
                                                      redis_client: redis.Redis) -> None:
    app = make_app(config, JOB_VISIBILITY="owner")
    ops = app.test_client()
    made = new_key(ops, "leaked")
    key = made["key"]
    program = app.test_client(use_cookies=False)
    job = start(program, key)
    batch = program.post("/api/batches", headers=auth(key),
                         json={"kind": "demo", "items": [{}]}).get_json()
    assert ops.delete(f"/api/keys/{made['id']}", headers=OPS).status_code == 200
    jobs_before = redis_client.zcard(keys.RECENT_JOBS)
    for token in (key, MADE_UP):
        for method, path, body in [
            ("POST", "/api/jobs", {}),
            ("POST", "/api/batches", {"kind": "demo", "items": [{}]}),
            ("POST", "/api/snippets", {"source": "x = 1\n"}),
            ("GET", f"/api/jobs/{job['id']}", None),
            ("GET", f"/api/jobs/{job['id']}/log", None),
            ("POST", f"/api/jobs/{job['id']}/cancel", None),
            ("POST", f"/api/jobs/{job['id']}/retry", None),
            ("POST", f"/api/batches/{batch['batchId']}/cancel", None),
            ("GET", f"/api/batches/{batch['batchId']}", None),
            ("GET", "/api/kinds", None),
            ("GET", "/api/keys", None),
            ("POST", "/api/progress", {"jobId": job["id"], "progress": 5}),
        ]:
            resp = program.open(path, method=method, headers=auth(token), json=body)
            assert resp.status_code == 401, (token[:8], method, path, resp.get_data(as_text=True))
            assert resp.get_json()["error"] == "This API key is unknown or was revoked."
            assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        page = program.get(f"/jobs/{job['id']}", headers={**auth(token), "Accept": "text/html"})
        assert page.status_code == 401 and "revoked" in page.get_data(as_text=True)
        # Socket.IO: the handshake's bearer token or a controlToken
        for kwargs in ({"headers": auth(token)}, {"auth": {"controlToken": token}}):
            watcher = socketio.test_client(app, query_string=f"jobId={job['id']}", **kwargs)
            assert not watcher.is_connected()
            assert not socketio.test_client(app, **kwargs).is_connected()
        plain = socketio.test_client(app)
        ack = plain.emit("subscribe", {"jobId": job["id"], "controlToken": token}, callback=True)
        assert ack == {"ok": False, "error": "This API key is unknown or was revoked."}
    assert redis_client.zcard(keys.RECENT_JOBS) == jobs_before  # nothing started
    assert redis_client.hget(keys.job_key(job["id"]), "state") == "queued"
    assert redis_client.hget(keys.job_key(job["id"]), "progress") == "0"


def test_a_revoked_key_is_refused_at_once_in_every_web_process(config: Config) -> None:
    """Two apps on one Redis (two web processes): a revocation in one holds in the other
    on the next request, with no cache to wait out."""
    first, second = make_app(config), make_app(config)
    made = new_key(first.test_client(), "rotated")
    program = second.test_client(use_cookies=False)
    assert program.post("/api/jobs", headers=auth(made["key"])).status_code == 202
    assert first.test_client().delete(f"/api/keys/{made['id']}", headers=OPS).status_code == 200
    assert program.post("/api/jobs", headers=auth(made["key"])).status_code == 401


def test_a_key_is_no_worker_token(client: FlaskClient, redis_client: redis.Redis) -> None:
    key = new_key(client, "worker-wannabe")["key"]
    program = client.application.test_client(use_cookies=False)
    job = start(program, key)
    external = start(program, key, kind="external")
    for body in ({"jobId": job["id"], "progress": 50, "state": "running"},
                 {"jobId": job["id"], "state": "cancelled"},
                 [{"jobId": job["id"], "progress": 60}],
                 {"jobId": external["id"], "progress": 10, "seq": seq_limit(0)}):
        resp = program.post("/api/progress", headers=auth(key), json=body)
        assert resp.status_code == 401, (body, resp.get_data(as_text=True))
    claim = program.post("/api/workers/claim", headers=auth(key),
                         json={"kinds": ["external"], "worker": "w", "wait": 0})
    assert claim.status_code == 401
    beat = program.post("/api/workers/heartbeat", headers=auth(key),
                        json={"worker": "w", "jobs": [{"jobId": external["id"]}]})
    assert beat.status_code == 401
    for job_id in (job["id"], external["id"]):
        stored = redis_client.hgetall(keys.job_key(job_id))
        assert (stored["state"], stored["progress"]) == ("queued", "0")
    assert not redis_client.hget(keys.job_key(external["id"]), "worker")


def test_a_key_cannot_name_an_owner_nor_go_first(client: FlaskClient,
                                                 redis_client: redis.Redis) -> None:
    alice = new_key(client, "alice")
    mallory = new_key(client, "mallory")
    program = client.application.test_client(use_cookies=False)
    first = start(program, alice["key"])
    queue = rq_queue(client.application)
    for asked in ("ops", alice["owner"], "operator", "", "u-0123456789abcdef"):
        job = start(program, mallory["key"], owner=asked, tenant="ops", priority="low",
                    atFront=True, at_front=True, front=True, queue="high")
        stored = redis_client.hgetall(keys.job_key(job["id"]))
        assert job["owner"] == stored["owner"] == stored["tenant"] == mallory["owner"], asked
        assert stored["priority"] == "low"  # yielding to others is allowed
        assert queue.job_ids[0] == first["id"] and job["id"] not in queue.job_ids
    # Going first takes an operator (#27: priorities): 403 naming priority, nothing stored.
    stored_before = redis_client.zcard(keys.owner_index(mallory["owner"]))
    for body, status in (({"priority": "high"}, 403), ({"priority": 100}, 400),
                         ({"priority": "urgent"}, 400)):
        resp = program.post("/api/jobs", headers=auth(mallory["key"]), json=body)
        assert resp.status_code == status and "priority" in resp.get_json()["fields"], body
        resp = program.post("/api/batches", headers=auth(mallory["key"]),
                            json={"kind": "demo", "items": [{}], **body})
        assert resp.status_code == status and "priority" in resp.get_json()["fields"], body
    assert redis_client.zcard(keys.owner_index(mallory["owner"])) == stored_before
    assert rq_queue(client.application, "high").count == 0
    raised = client.post("/api/jobs", headers=OPS, json={"priority": "high"})  # an operator
    assert raised.status_code == 202 and rq_queue(client.application, "high").job_ids == [
        raised.get_json()["id"]]
    for odd in (["ops"], {"owner": "ops"}, True, 7):  # not text: 400, nothing started
        resp = program.post("/api/jobs", headers=auth(mallory["key"]), json={"owner": odd})
        assert resp.status_code == 400 and "owner" in resp.get_json()["fields"]
    batch = program.post("/api/batches", headers=auth(mallory["key"]),
                         json={"kind": "demo", "items": [{}], "owner": "ops", "atFront": True})
    assert batch.status_code == 202 and batch.get_json()["owner"] == mallory["owner"]
    assert queue.job_ids[0] == first["id"]
    # nor make keys, find jobs, or open the operators' pages
    for method, path in (("POST", "/api/keys"), ("GET", "/api/keys"),
                         ("DELETE", f"/api/keys/{alice['id']}"), ("GET", "/api/jobs"),
                         ("GET", "/dashboard"), ("GET", "/api/schedules")):
        resp = program.open(path, method=method, headers=auth(mallory["key"]),
                            json={"name": "mine"} if method == "POST" else None)
        assert resp.status_code == 401, (method, path)
    listed = client.get("/api/keys", headers=OPS).get_json()["keys"]
    assert [(k["name"], k["revoked"]) for k in listed] == [("alice", False), ("mallory", False)]
