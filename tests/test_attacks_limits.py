"""Issue #13, parts 2, 4 and 6: limits that keep one client from exhausting
Redis, the Socket.IO connection cap, or the server's rooms.

Real python-socketio clients talk to an in-process app served by werkzeug in a
thread (so the test can read ``socketio.server.manager.rooms``), or to a real
gunicorn stack; Redis is always a real redis-server.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import socketio
from flask import Flask
from werkzeug.serving import make_server

from shared.config import Config
from shared.protocol import DASHBOARD_ROOM, new_id, room_for
from tests.support import TEST_PROGRESS_TOKEN, TEST_SECRET_KEY, RedisServer, free_port
from website import create_app
from website.extensions import socketio as flask_socketio


def make_app(redis_url: str, **overrides: Any) -> Flask:
    """An app in threading mode on ``redis_url``."""
    cfg = Config(environ={}, SECRET_KEY=TEST_SECRET_KEY, PROGRESS_TOKEN=TEST_PROGRESS_TOKEN,
                 REDIS_URL=redis_url, ASYNC_MODE="threading", RATE_LIMIT="0", **overrides)
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
            from website.ops.auth import dashboard_token
            token = dashboard_token()
        ack = sio.call("watchDashboard", {"token": token, "page": 1}, timeout=20)
        assert ack == {"ok": False, "error": "state store unavailable, retry later"}
        assert job_rooms() == set()


def test_rooms_per_connection_are_capped(redis_url: str) -> None:
    app = make_app(redis_url, SOCKETIO_MAX_ROOMS=3, SOCKETIO_EVENT_RATE=0.0)
    web = app.test_client()
    ids = [web.post("/api/jobs").get_json()["id"] for _ in range(4)]
    with served(app) as url, client(url) as sio:
        for job_id in ids[:3]:
            assert sio.call("subscribe", {"jobId": job_id}, timeout=10) == {"ok": True}
        refused = sio.call("subscribe", {"jobId": ids[3]}, timeout=10)
        assert refused == {"ok": False,
                           "error": "too many subscriptions: at most 3 per connection"}
        # Subscribing again to a room it is in is fine; unknown ids leave nothing behind.
        assert sio.call("subscribe", {"jobId": ids[0]}, timeout=10) == {"ok": True}
        assert sio.call("subscribe", {"jobId": new_id()}, timeout=10)["ok"] is False
        assert job_rooms() == {room_for(job_id) for job_id in ids[:3]}
        with client(url) as other:  # the cap is per connection
            assert other.call("subscribe", {"jobId": ids[3]}, timeout=10) == {"ok": True}


def test_subscribe_and_watch_dashboard_are_throttled(redis_url: str) -> None:
    app = make_app(redis_url, SOCKETIO_EVENT_RATE=1.0, SOCKETIO_EVENT_BURST=5)
    job_id = app.test_client().post("/api/jobs").get_json()["id"]
    with app.app_context():
        from website.ops.auth import dashboard_token
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
    with pytest.raises(Exception, match="SOCKETIO_MAX_ROOMS"):
        Config(environ={"SOCKETIO_MAX_ROOMS": "0"}, SECRET_KEY="x", PROGRESS_TOKEN="y")
