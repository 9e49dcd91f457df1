"""The relay in-process: what it pushes for a published job id, and when it runs.

The end-to-end path (worker fallback -> Redis channel -> listener in a real
gunicorn process -> Socket.IO client) is
``tests/test_recovery_stack.py::test_state_stored_by_the_fallback_is_pushed_without_a_message_queue``.
"""

from __future__ import annotations

from flask import Flask

from shared.protocol import FAILED, ProgressUpdate, new_id
from website.extensions import core, socketio
from website.realtime.relay import EXTENSION, Relay


def relay_of(app: Flask) -> Relay:
    relay = app.extensions[EXTENSION]
    assert isinstance(relay, Relay)
    return relay


def test_push_sends_the_stored_state_to_the_jobs_room_only(app: Flask) -> None:
    job_id, other = new_id(), new_id()
    with app.app_context():
        core.store.create(job_id, kind="demo")
        core.store.create(other, kind="demo")
        core.store.finish(job_id, FAILED, "gone")
    watcher = socketio.test_client(app, query_string=f"jobId={job_id}")
    bystander = socketio.test_client(app, query_string=f"jobId={other}")
    watcher.get_received(), bystander.get_received()
    assert relay_of(app).push(job_id) == 2  # the job's room and the dashboard
    assert [m["args"][0] for m in watcher.get_received() if m["name"] == "updateProgress"] == [
        {"jobId": job_id, "progress": 0, "state": "failed", "message": "gone"}]
    assert bystander.get_received() == []


def test_push_sends_the_log_lines_the_fallback_stored(app: Flask) -> None:
    job_id = new_id()
    with app.app_context():
        core.store.create(job_id, kind="demo")
        applied, _, _ = core.store.apply(ProgressUpdate(
            job_id=job_id, progress=10, message="a", log=("one", "two")))
    assert applied is not None and applied.log is not None
    watcher = socketio.test_client(app, query_string=f"jobId={job_id}")
    watcher.get_received()
    assert relay_of(app).push(f"{job_id} {applied.log.after}") == 3  # + jobLog
    lines = [m["args"][0] for m in watcher.get_received() if m["name"] == "jobLog"]
    assert [[x["text"] for x in batch["lines"]] for batch in lines] == [["one", "two"]]
    assert relay_of(app).push(f"{job_id} not-an-id") == 2  # a bad pointer: the state only


def test_a_published_id_of_no_job_pushes_nothing(app: Flask) -> None:
    # Publishers send only an id; the relay pushes what is stored, so a stray
    # or forged message cannot put anything on a page.
    assert relay_of(app).push(new_id()) == 0
    assert relay_of(app).push("not-a-job") == 0


def test_relay_runs_only_where_it_is_needed(app: Flask) -> None:
    relay = relay_of(app)
    assert not relay.wanted  # a test app (TESTING, ASYNC_MODE=threading)
    assert not relay.ensure_started() and relay.pid is None
    # what gunicorn serves: eventlet or gevent, not a test app
    app.testing = False
    for mode in ("eventlet", "gevent"):
        app.config["ASYNC_MODE"] = mode
        assert relay.wanted
    app.config["SOCKETIO_MESSAGE_QUEUE"] = app.config["REDIS_URL"]
    assert not relay.wanted  # the worker emits through the message queue itself
