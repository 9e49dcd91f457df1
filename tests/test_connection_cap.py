"""A full connection pool must not block the progress callback.

The web process runs with a small ``WORKER_CONNECTIONS`` (gunicorn's green
thread pool) and a Socket.IO cap below it. The test opens more idle Socket.IO
connections than the pool has room for: those over the cap are refused at once
with 503, and ``/api/progress`` and the JSON API keep answering. Without the
cap the pool would fill, the extra clients would hang and so would the
callback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import socketio

from tests.support import (
    EventRecorder,
    Process,
    RedisServer,
    assert_security_headers,
    auth,
    free_port,
    stack_env,
    start_web,
    wait_until,
)

POOL = 40
CAP = 30
ATTEMPTS = POOL + 8


@pytest.fixture(scope="module", params=["eventlet", "gevent"])
def small_site(request: pytest.FixtureRequest, log_dir: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Redis + one web process with a 40-connection pool and a 30-connection cap,
    under each of gunicorn's green worker classes."""
    server = RedisServer(log_dir, tmp_path_factory.mktemp("cap-redis")).start()
    env = stack_env(server.url, free_port(), WORKER_CONNECTIONS=str(POOL),
                    SOCKETIO_MAX_CONNECTIONS=str(CAP), SOCKETIO_MAX_PER_CLIENT=str(POOL),
                    ASYNC_MODE=request.param)
    procs: list[Process] = [server]
    try:
        web = start_web(env, log_dir, name=f"web-cap-{request.param}")
        assert f"Using worker: {request.param}" in web.log_tail(20000)
        procs.append(web)
        yield env["SITE_URL"]
    finally:
        for proc in reversed(procs):
            proc.stop()


def _connect(url: str, job_id: str) -> socketio.Client | None:
    """A websocket Socket.IO client watching ``job_id`` (a connection in no room would
    be closed after ``SOCKETIO_IDLE_JOIN_SECONDS``), or None when the server refused it."""
    client = socketio.Client(reconnection=False)
    try:
        client.connect(f"{url}?jobId={job_id}", transports=["websocket"], wait_timeout=5)
    except socketio.exceptions.ConnectionError:
        return None
    return client


def test_full_pool_refuses_new_sockets_and_callback_still_answers(small_site: str) -> None:
    job_id = requests.post(small_site + "/api/jobs", timeout=5).json()["id"]
    watcher = EventRecorder(small_site, job_id)  # one of the CAP connections
    idle: list[socketio.Client] = []
    refused = 0
    try:
        for _ in range(ATTEMPTS - 1):
            client = _connect(small_site, job_id)
            if client is None:
                refused += 1
            else:
                idle.append(client)
        assert len(idle) + 1 == CAP, (len(idle), refused)
        assert refused == ATTEMPTS - CAP

        # A new Engine.IO handshake gets a clean 503 with Retry-After, at once.
        resp = requests.get(small_site + "/socket.io/?EIO=4&transport=polling", timeout=5)
        assert resp.status_code == 503
        assert resp.headers["Retry-After"] == "5"
        assert "retry" in resp.json()["error"]
        assert_security_headers(resp.headers, urlsplit(small_site).netloc)

        # HTTP endpoints still answer and the watcher still gets its updates.
        for progress in (30, 60):
            body = {"jobId": job_id, "progress": progress, "state": "running",
                    "message": f"at {progress}"}
            resp = requests.post(small_site + "/api/progress", json=body, headers=auth(),
                                 timeout=5)
            assert resp.status_code == 204, resp.text
        assert requests.get(f"{small_site}/api/jobs/{job_id}", timeout=5).json()[
            "progress"] == 60
        watcher.wait_for(lambda ev: any(d.get("progress") == 60 for _, d in ev),
                         what="update while the pool is full")

        # Closing connections makes room again.
        for client in idle[:3]:
            client.disconnect()
        del idle[:3]
        # The server notices the closes a moment later; under gevent only at the
        # next ping (about 20 s here): closed websockets hold their slot until then.
        idle.append(wait_until(lambda: _connect(small_site, job_id), timeout=60, interval=0.5,
                               what="room for a new connection after closing three"))
        handshake = wait_until(
            lambda: (r := requests.get(small_site + "/socket.io/?EIO=4&transport=polling",
                                       timeout=5)).status_code == 200 and r,
            timeout=60, interval=0.5, what="room for a polling handshake")
        # an engine.io answer, not Flask's: the headers too
        assert_security_headers(handshake.headers, urlsplit(small_site).netloc)
    finally:
        for client in idle:
            client.disconnect()
        watcher.close()
