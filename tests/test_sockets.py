"""Socket.IO handlers in-process (Flask-SocketIO test client) over a real Redis."""

from __future__ import annotations

from flask import Flask

from shared.protocol import new_id
from tests.support import auth
from website.extensions import socketio


def start(app: Flask) -> str:
    return str(app.test_client().post("/api/jobs").get_json()["id"])


def test_connect_with_job_id_sends_current_state_at_once(app: Flask) -> None:
    job_id = start(app)
    app.test_client().post("/api/progress", headers=auth(),
                           json={"jobId": job_id, "progress": 60, "state": "running"})
    sio = socketio.test_client(app, query_string=f"jobId={job_id}")
    assert sio.is_connected()
    received = sio.get_received()
    assert received == [{"name": "updateProgress", "namespace": "/", "args": [
        {"jobId": job_id, "progress": 60, "state": "running", "message": ""}]}]


def test_callback_reaches_connections_in_the_room_only(app: Flask) -> None:
    watched, other = start(app), start(app)
    watcher = socketio.test_client(app, query_string=f"jobId={watched}")
    bystander = socketio.test_client(app, query_string=f"jobId={other}")
    watcher.get_received(), bystander.get_received()
    app.test_client().post("/api/progress", headers=auth(),
                           json={"jobId": watched, "progress": 10, "state": "running"})
    assert [m["args"][0]["progress"] for m in watcher.get_received()] == [10]
    assert bystander.get_received() == []


def test_malformed_or_unknown_job_id_is_refused(app: Flask) -> None:
    for job_id in ("nope", new_id()):
        sio = socketio.test_client(app, query_string=f"jobId={job_id}")
        assert not sio.is_connected()


def test_connect_without_job_then_subscribe(app: Flask) -> None:
    job_id = start(app)
    sio = socketio.test_client(app)
    assert sio.is_connected()
    assert sio.emit("subscribe", {"jobId": job_id}, callback=True) == {"ok": True}
    assert sio.get_received()[0]["args"][0]["state"] == "queued"
    bad = sio.emit("subscribe", {"jobId": "x"}, callback=True)
    assert bad["ok"] is False and "UUID" in bad["error"]
    assert sio.emit("subscribe", "garbage", callback=True)["ok"] is False
