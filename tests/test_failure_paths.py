"""Paths that only run when something goes wrong: Redis down under the socket
handlers, an unhandled exception, a stale worker heartbeat, a retry whose RQ
entry has expired. Real Redis, real processes where the path needs them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import socketio
from flask import Flask
from rq.job import Job

from shared.config import Config
from shared.kinds.highlight.snippets import snippet_key
from shared.protocol import new_id
from shared.rqconf import SERIALIZER
from shared.store import JobStore
from tests.support import (
    TEST_OPS_TOKEN,
    TEST_PROGRESS_TOKEN,
    TEST_SECRET_KEY,
    EventRecorder,
    Process,
    RedisServer,
    auth,
    free_port,
    stack_env,
    start_web,
    start_worker,
    wait_until,
)
from website import create_app


def metric(text: str, pattern: str) -> float:
    """The value of the one sample matching ``pattern`` (0 when absent)."""
    found = re.search(r"^" + pattern + r" (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


# -- Redis down under the Socket.IO handlers ----------------------------------------


@pytest.fixture
def web_on_redis(log_dir: Path, tmp_path: Path) -> Iterator[tuple[str, RedisServer]]:
    """A gunicorn web process on a Redis of its own (the test stops that Redis)."""
    server = RedisServer(log_dir, tmp_path / "redis").start()
    env = stack_env(server.url, free_port())
    web: Process | None = None
    try:
        web = start_web(env, log_dir, name="web-redis-down")
        yield env["SITE_URL"], server
    finally:
        if web is not None:
            web.stop()
        server.stop()


def test_socket_handlers_refuse_cleanly_while_redis_is_down(
        web_on_redis: tuple[str, RedisServer]) -> None:
    url, server = web_on_redis
    job_id = requests.post(url + "/api/jobs", timeout=5).json()["id"]
    watcher = EventRecorder(url)  # connected without a job: needs no Redis
    try:
        assert watcher.client.call("subscribe", {"jobId": job_id}, timeout=10) == {"ok": True}
        server.stop()
        # subscribe: a clear ack, and the connection stays usable
        for data in ({"jobId": job_id}, {"snippetId": new_id()}):
            ack = watcher.client.call("subscribe", data, timeout=10)
            assert ack == {"ok": False, "error": "state store unavailable, retry later"}, data
        assert watcher.client.connected
        # connect with ?jobId=: refused with the reason
        reasons: list[Any] = []
        client = socketio.Client(reconnection=False)
        client.on("connect_error", reasons.append)
        with pytest.raises(socketio.exceptions.ConnectionError):
            client.connect(f"{url}?jobId={job_id}", transports=["websocket"], wait_timeout=10)
        client.disconnect()
        assert reasons == [{"message": "state store unavailable, retry later"}]
        # and HTTP says 503, not 500
        assert requests.get(f"{url}/api/jobs/{job_id}", timeout=5).status_code == 503
    finally:
        watcher.close()


# -- an unhandled exception ------------------------------------------------------------


def test_unhandled_exception_is_a_json_500_and_counted(app: Flask,
                                                       redis_client: redis.Redis) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer like production
    client = app.test_client()
    # A highlight job whose snippet hash is corrupt: emitting its success raises.
    job_id, snippet_id = new_id(), new_id()
    JobStore(redis_client).create(job_id, kind="highlight",
                                  args=json.dumps({"snippet": snippet_id}))
    redis_client.hset(snippet_key(snippet_id),
                      mapping={"id": snippet_id, "created_at": "not a time"})
    resp = client.post("/api/progress", headers=auth(),
                       json={"jobId": job_id, "progress": 100, "state": "succeeded"})
    assert resp.status_code == 500 and resp.is_json, resp.data
    assert resp.get_json()["error"] and "Traceback" not in resp.get_data(as_text=True)
    metrics = client.get("/metrics", headers=auth(TEST_OPS_TOKEN)).get_data(as_text=True)
    assert metric(metrics, r'jobcast_callbacks_total\{result="error"\}') == 1
    page = client.get("/jobs/" + job_id + "/nope", headers={"Accept": "text/html"})
    assert page.status_code == 404  # the app keeps serving


# -- /healthz and a worker whose heartbeat stopped ---------------------------------------


def test_health_is_503_once_the_only_workers_heartbeat_is_stale(
        redis_url: str, log_dir: Path) -> None:
    env = stack_env(redis_url, free_port(), WORKER_TTL="20")
    worker = start_worker(env, log_dir, name="stale-worker")

    def health(max_age: int) -> Any:
        app = create_app(Config(environ={}, WORKER_TOKEN="w", SECRET_KEY=TEST_SECRET_KEY,
                                PROGRESS_TOKEN=TEST_PROGRESS_TOKEN, REDIS_URL=redis_url,
                                ASYNC_MODE="threading", HEALTH_WORKER_MAX_AGE=max_age,
                                OPS_TOKEN=TEST_OPS_TOKEN))
        return app.test_client().get("/healthz", headers=auth(TEST_OPS_TOKEN))

    try:
        assert health(3).status_code == 200  # it just registered
        worker.kill()  # SIGKILL: it stays registered, its heartbeat stops
        stale = wait_until(lambda: (r := health(3)).status_code == 503 and r, timeout=15,
                           what="the heartbeat to be older than 3 s")
        workers = stale.get_json()["workers"]
        assert workers == {"ok": False, "seen": 0, "registered": 1, "max_age_seconds": 3,
                           "names": []}
        assert health(300).status_code == 200  # the same heartbeat within a longer limit
    finally:
        worker.kill()


# -- retry when RQ no longer has the job ------------------------------------------------


def test_retry_is_refused_once_the_rq_entry_expired(client: Any, redis_url: str) -> None:
    job_id = client.post("/api/jobs").get_json()["id"]
    operator = auth(TEST_OPS_TOKEN)
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=operator).status_code == 200
    Job.fetch(job_id, connection=redis.Redis.from_url(redis_url),
              serializer=SERIALIZER).delete()  # what its TTL does
    resp = client.post(f"/api/jobs/{job_id}/retry", headers=auth(TEST_OPS_TOKEN))
    assert resp.status_code == 409
    assert "queue entry has expired" in resp.get_json()["error"]
    assert client.get(f"/api/jobs/{job_id}").get_json()["state"] == "cancelled"
    metrics = client.get("/metrics", headers=auth(TEST_OPS_TOKEN)).get_data(as_text=True)
    assert metric(metrics, r'jobcast_job_control_total\{action="retry",result="409"\}') == 1
