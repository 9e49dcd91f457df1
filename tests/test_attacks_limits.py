"""Issue #13, parts 2, 4 and 6: limits that keep one client from exhausting
Redis, the Socket.IO connection cap, or the server's rooms.

Real python-socketio clients talk to an in-process app served by werkzeug in a
thread (so the test can read ``socketio.server.manager.rooms``), or to a real
gunicorn stack; Redis is always a real redis-server.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import requests
import socketio
from flask import Flask
from werkzeug.serving import make_server

from shared import keys
from shared.config import Config, ConfigError
from shared.kinds.highlight import run_highlight
from shared.kinds.highlight.snippets import (
    RECENT_MAX,
    RECENT_SNIPPETS,
    HtmlTooLarge,
    SnippetStore,
    snippet_key,
)
from shared.protocol import DASHBOARD_ROOM, new_id, room_for
from shared.store import JobStore
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import (
    TEST_PROGRESS_TOKEN,
    TEST_SECRET_KEY,
    EventRecorder,
    Process,
    RedisServer,
    csrf_token_in,
    final_state_received,
    free_port,
    stack_env,
    start_web,
    wait_until,
)
from website import create_app
from website.auth.operators import dashboard_token
from website.extensions import socketio as flask_socketio


def make_app(redis_url: str, **overrides: Any) -> Flask:
    """An app in threading mode on ``redis_url``."""
    cfg = Config(environ={}, SECRET_KEY=TEST_SECRET_KEY, PROGRESS_TOKEN=TEST_PROGRESS_TOKEN,
                 WORKER_TOKEN="w", REDIS_URL=redis_url, ASYNC_MODE="threading", RATE_LIMIT="0",
                 **overrides)
    return create_app(cfg)


@contextmanager
def served(app: Flask) -> Iterator[str]:
    """Serve ``app`` on a free port in a thread; its base URL."""
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(10)


@contextmanager
def client(url: str) -> Iterator[socketio.Client]:
    """A connected python-socketio client (websocket)."""
    sio = socketio.Client(reconnection=False)
    sio.connect(url, transports=["websocket"], wait_timeout=10)
    try:
        yield sio
    finally:
        sio.disconnect()


def job_rooms() -> set[str]:
    """The rooms of the in-process Socket.IO server that are not a connection's own."""
    rooms = flask_socketio.server.manager.rooms.get("/", {})
    own = set(rooms.get(None, {}))
    return {room for room in rooms if room is not None and room not in own}


# --- part 6: subscriptions --------------------------------------------------

def test_redis_down_during_subscribe_leaves_no_room(log_dir: Path, tmp_path: Path) -> None:
    dead = RedisServer(log_dir, tmp_path / "dead").start()
    app = make_app(dead.url)
    dead.stop()  # Redis is down from here on
    with served(app) as url, client(url) as sio:
        for _ in range(5):
            ack = sio.call("subscribe", {"jobId": new_id()}, timeout=20)
            assert ack == {"ok": False, "error": "state store unavailable, retry later"}
            ack = sio.call("subscribe", {"snippetId": new_id()}, timeout=20)
            assert ack["ok"] is False
        assert job_rooms() == set()
        with app.app_context():
            token = dashboard_token()
        ack = sio.call("watchDashboard", {"token": token, "page": 1}, timeout=20)
        assert ack == {"ok": False, "error": "state store unavailable, retry later"}
        assert job_rooms() == set()


def test_rooms_per_connection_are_capped(redis_url: str) -> None:
    app = make_app(redis_url, SOCKETIO_MAX_ROOMS=3, SOCKETIO_EVENT_RATE=0.0)
    web = app.test_client()
    ids = [web.post("/api/jobs").get_json()["id"] for _ in range(4)]
    with served(app) as url, client(url) as sio:
        # An unknown id leaves no room behind, so it takes no place under the cap.
        assert sio.call("subscribe", {"jobId": new_id()}, timeout=10)["ok"] is False
        for job_id in ids[:3]:
            assert sio.call("subscribe", {"jobId": job_id}, timeout=10) == {"ok": True}
        refused = sio.call("subscribe", {"jobId": ids[3]}, timeout=10)
        assert refused == {"ok": False,
                           "error": "too many subscriptions: at most 3 per connection"}
        # Subscribing again to a room it is in is fine.
        assert sio.call("subscribe", {"jobId": ids[0]}, timeout=10) == {"ok": True}
        assert job_rooms() == {room_for(job_id) for job_id in ids[:3]}
        with client(url) as other:  # the cap is per connection
            assert other.call("subscribe", {"jobId": ids[3]}, timeout=10) == {"ok": True}


def test_subscribe_and_watch_dashboard_are_throttled(redis_url: str) -> None:
    # One token per 10 s: the burst of 5 is all this test can spend.
    app = make_app(redis_url, SOCKETIO_EVENT_RATE=0.1, SOCKETIO_EVENT_BURST=5)
    job_id = app.test_client().post("/api/jobs").get_json()["id"]
    with app.app_context():
        token = dashboard_token()
    with served(app) as url, client(url) as sio:
        acks = [sio.call("subscribe", {"jobId": job_id}, timeout=10) for _ in range(5)]
        assert all(ack == {"ok": True} for ack in acks)
        refused = sio.call("subscribe", {"jobId": job_id}, timeout=10)
        assert refused["ok"] is False and "too many requests" in refused["error"]
        watch = sio.call("watchDashboard", {"token": token, "page": 1}, timeout=10)
        assert watch["ok"] is False and "too many requests" in watch["error"]
        assert DASHBOARD_ROOM not in job_rooms()
        with client(url) as other:  # the bucket is per connection
            ack = other.call("watchDashboard", {"token": token, "page": 1}, timeout=10)
            assert ack["ok"] is True and "snapshot" in ack


def test_bad_limits_are_refused_by_config() -> None:
    with pytest.raises(ConfigError, match="SOCKETIO_MAX_ROOMS"):
        Config(environ={"SOCKETIO_MAX_ROOMS": "0"}, SECRET_KEY="x", PROGRESS_TOKEN="y",
               WORKER_TOKEN="w")


# --- part 4: the Socket.IO connection cap -----------------------------------

CAP = 20
PER_CLIENT = 5
CONNECT_TIMEOUT = 2


def handshake(url: str, source: str, connect: bool = False, query: str = "") -> tuple[int, str]:
    """A bare Engine.IO polling handshake from ``source`` (an address on loopback),
    with ``query`` added to its URL; with ``connect``, also the Socket.IO CONNECT
    packet. The status and the sid."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request("GET", f"/socket.io/?EIO=4&transport=polling{query}")
        resp = conn.getresponse()
        body = resp.read().decode()
        if resp.status != 200:
            return resp.status, ""
        sid = str(json.loads(body[1:])["sid"])
        if connect:
            conn.request("POST", f"/socket.io/?EIO=4&transport=polling&sid={sid}", body="40",
                         headers={"Content-Type": "text/plain;charset=UTF-8"})
            posted = conn.getresponse()
            posted.read()
            assert posted.status == 200
        return resp.status, sid
    finally:
        conn.close()


@pytest.fixture(scope="module")
def capped_site(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Redis + one gunicorn web process with a 20-session cap, 5 per address, 2 s to connect."""
    server = RedisServer(log_dir, tmp_path_factory.mktemp("caps-redis")).start()
    env = stack_env(server.url, free_port(), SOCKETIO_MAX_CONNECTIONS=str(CAP),
                    SOCKETIO_MAX_PER_CLIENT=str(PER_CLIENT),
                    SOCKETIO_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT), RATE_LIMIT="0")
    procs: list[Process] = [server]
    try:
        procs.append(start_web(env, log_dir, name="web-caps"))
        yield env["SITE_URL"]
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_sessions_per_address_are_capped(capped_site: str) -> None:
    # Sessions that completed a Socket.IO connect are kept (they count).
    sids = [handshake(capped_site, "127.0.0.2", connect=True) for _ in range(PER_CLIENT)]
    assert [status for status, _ in sids] == [200] * PER_CLIENT
    status, _ = handshake(capped_site, "127.0.0.2")
    assert status == 429
    assert handshake(capped_site, "127.0.0.3")[0] == 200  # another client is not affected


def test_bare_handshakes_are_dropped_and_cannot_hold_the_cap(capped_site: str) -> None:
    bare: list[str] = []
    refused = 0
    for n in range(2 * CAP):  # from several addresses, as many as the cap lets in
        status, sid = handshake(capped_site, f"127.0.1.{n // PER_CLIENT + 1}")
        if status == 503:
            refused += 1
            break
        assert status == 200
        bare.append(sid)
    assert refused, "the cap never filled"
    assert handshake(capped_site, "127.0.2.1")[0] == 503
    # Within the connect timeout (plus a sweep) the bare sessions are dropped, and
    # a real client connects again (without the sweep they stay for ~45 s).
    recorder = wait_until(lambda: EventRecorder(capped_site), timeout=CONNECT_TIMEOUT + 8,
                          what="a real client to connect")
    recorder.close()
    resp = requests.get(f"{capped_site}/socket.io/?EIO=4&transport=polling&sid={bare[0]}",
                        timeout=10)
    assert resp.status_code == 400  # the bare session is gone


# --- part 2: one client cannot fill Redis -----------------------------------

def stored(client: redis.Redis, pattern: str) -> int:
    """How many records match ``pattern`` (not their sub-keys: a job's ``:timeline``)."""
    return sum(1 for key in client.scan_iter(pattern)
               if str(key).count(":") == pattern.count(":"))


def test_job_count_cap_answers_503_and_stores_nothing(redis_url: str,
                                                      redis_client: redis.Redis) -> None:
    app = make_app(redis_url, MAX_STORED_JOBS=3)
    web = app.test_client()
    assert [web.post("/api/jobs").status_code for _ in range(3)] == [202] * 3
    resp = web.post("/api/jobs")
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "60"
    assert "as many jobs as it may (3)" in resp.get_json()["error"]
    form = web.post("/jobs", data={"csrf_token": csrf_token_in(web.get("/").data)},
                    headers={"Accept": "text/html"})
    assert form.status_code == 503 and form.mimetype == "text/html"
    assert b"as many jobs as it may" in form.data
    assert stored(redis_client, "jobcast:job:*") == 3
    assert stored(redis_client, "rq:job:*") == 3  # handed to RQ (queued or held back)


def test_snippet_count_cap_answers_503_and_stores_nothing(redis_url: str,
                                                          redis_client: redis.Redis) -> None:
    app = make_app(redis_url, MAX_STORED_SNIPPETS=2)
    web = app.test_client()
    for _ in range(2):
        assert web.post("/api/snippets", json={"source": "x = 1\n"}).status_code == 202
    resp = web.post("/api/snippets", json={"source": "x = 1\n"})
    assert resp.status_code == 503
    assert "as many snippets as it may (2)" in resp.get_json()["error"]
    assert stored(redis_client, "jobcast:snippet:*") == 2
    assert stored(redis_client, "jobcast:job:*") == 2


def test_byte_cap_answers_503(redis_url: str, redis_client: redis.Redis) -> None:
    app = make_app(redis_url, STORE_MAX_BYTES=1)  # Redis always uses more than 1 byte
    resp = app.test_client().post("/api/jobs")
    assert resp.status_code == 503
    assert resp.get_json() == {"error": "The store is full; try again later, when older "
                                        "jobs and snippets have expired."}
    assert stored(redis_client, "jobcast:*") == 0


def test_recent_indexes_are_trimmed_by_count(redis_client: redis.Redis) -> None:
    jobs = JobStore(redis_client, max_stored=3)
    ids = [new_id() for _ in range(5)]
    for job_id in ids:
        jobs.create(job_id)
    assert redis_client.zrange(keys.RECENT_JOBS, 0, -1) == ids[2:]
    snippets = SnippetStore(redis_client, max_stored=RECENT_MAX)
    for n in range(RECENT_MAX + 5):
        snippets.create("x", "auto", new_id(), now=1_000_000_000 + n)
    assert redis_client.zcard(RECENT_SNIPPETS) == RECENT_MAX


def test_html_over_the_cap_is_not_stored(redis_client: redis.Redis) -> None:
    store = SnippetStore(redis_client, html_max=2048)
    snippet = store.create("x = 1\n" * 200, "python", new_id())
    with pytest.raises(HtmlTooLarge, match="over the"):
        run_highlight(snippet.snippet_id, store, lambda *args, **kwargs: None, html_max=2048)
    with pytest.raises(HtmlTooLarge):
        store.set_highlighted(snippet.snippet_id, "<b>" * 1000, "Python")
    assert redis_client.hget(snippet_key(snippet.snippet_id), "highlighted_html") is None


@pytest.fixture(scope="module")
def html_capped_stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A real stack whose highlight jobs may store at most 4 KB of HTML."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("html-cap-redis"),
                          SNIPPET_HTML_MAX="4096", RATE_LIMIT="0")
    yield running
    stop_stack(running)


def test_html_over_the_cap_fails_the_job_and_the_page_is_told(html_capped_stack: Stack) -> None:
    stack = html_capped_stack
    resp = requests.post(stack.url + "/api/snippets",
                         json={"source": "value = compute(1, 2, 3)\n" * 400,
                               "language": "python"}, timeout=10)
    assert resp.status_code == 202, resp.text
    snippet_id = resp.json()["id"]
    rec = EventRecorder(stack.url)
    try:
        assert rec.client.call("subscribe", {"snippetId": snippet_id}, timeout=10)["ok"]
        events = rec.wait_for(final_state_received(), timeout=30, what="the failure")
    finally:
        rec.close()
    final = [data for name, data in events if name == "updateProgress"][-1]
    assert final["state"] == "failed"
    assert "HtmlTooLarge: the highlighted HTML would be" in final["message"]
    assert "highlight a shorter snippet" in final["message"]
    assert requests.get(f"{stack.url}/snippets/{snippet_id}/highlighted",
                        timeout=5).status_code != 200


def test_full_redis_answers_503_and_keeps_stored_jobs(log_dir: Path, tmp_path: Path) -> None:
    server = RedisServer(log_dir, tmp_path / "small").start()
    raw = redis.Redis.from_url(server.url)
    try:
        # The embedded Redis never evicts: full means writes are refused.
        assert raw.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert raw.config_get("maxmemory") == {"maxmemory": str(256 * 1024 * 1024)}
        app = make_app(server.url, STORE_MAX_BYTES=10**12, HEALTH_WORKER_MAX_AGE=0,
                       OPS_TOKEN="ops")
        web = app.test_client()
        ids = [web.post("/api/jobs").get_json()["id"] for _ in range(3)]
        limit = int(raw.info("memory")["used_memory"]) + 2 * 1024 * 1024
        raw.config_set("maxmemory", limit)
        for size in (50_000, 100):  # fill it up to the last few bytes
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                for n in range(100_000):
                    raw.set(f"filler:{size}:{n}", b"x" * size)
        # Redis frees client buffers in the background: keep the limit just
        # under what it holds now, so it stays full for the rest of the test.
        limit = int(raw.info("memory")["used_memory"]) - 256 * 1024
        raw.config_set("maxmemory", limit)
        resp = web.post("/api/jobs")
        assert resp.status_code == 503
        assert resp.headers["Retry-After"] == "60"
        assert resp.get_json() == {"error": "The store is full; try again later, when older "
                                            "jobs and snippets have expired."}
        snippet = web.post("/api/snippets", json={"source": "x = 1\n"})
        assert snippet.status_code == 503 and "store is full" in snippet.get_json()["error"]
        for job_id in ids:  # what was stored is intact, and still queued for a worker
            assert web.get(f"/api/jobs/{job_id}").get_json()["state"] == "queued"
        assert len(raw.keys("rq:job:*")) == 3  # handed to RQ (queued or held back)
        assert raw.zcard(keys.RECENT_JOBS) == 3
        health = web.get("/healthz", headers={"Authorization": "Bearer ops"}).get_json()[
            "redis"]["memory"]
        assert health["maxmemory"] == limit
        assert health["used_memory"] > limit - 100_000
    finally:
        raw.close()
        server.stop()


def test_expired_entries_do_not_count_against_the_cap(redis_url: str,
                                                      redis_client: redis.Redis) -> None:
    app = make_app(redis_url, MAX_STORED_JOBS=2, JOB_TTL=3600)
    web = app.test_client()
    ids = [web.post("/api/jobs").get_json()["id"] for _ in range(2)]
    assert web.post("/api/jobs").status_code == 503
    # Both jobs expire (their index entries are older than JOB_TTL); the index is
    # only trimmed when something is created, which the cap refuses.
    for job_id in ids:
        redis_client.delete(keys.job_key(job_id))
        redis_client.zadd(keys.RECENT_JOBS, {job_id: 1_000_000})
    assert web.post("/api/jobs").status_code == 202
    assert redis_client.zcard(keys.RECENT_JOBS) == 1  # the create trimmed them
