"""End to end with real processes: Redis, the gunicorn/eventlet site, the RQ worker,
and real python-socketio clients over websockets and long-polling."""

from __future__ import annotations

import pytest
import redis
import requests
import socketio
from rq import Queue

from shared.protocol import RUN_KIND_JOB, new_id
from shared.rqconf import SERIALIZER
from shared.store import JobStore
from tests.conftest import Stack
from tests.support import (
    EventRecorder,
    demo_final,
    final_state_received,
    state_on_connect,
    wait_until,
)


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_events_arrive_in_order_and_end_at_100_succeeded(stack: Stack, transport: str) -> None:
    # The client watches before the job is enqueued, so it must see every step.
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    job_id = new_id()
    JobStore(client).create(job_id, kind="demo")
    rec = EventRecorder(stack.url, job_id, transports=[transport])
    try:
        rec.wait_for(lambda ev: len(ev) >= 1, what="state on connect")
        Queue("jobcast", connection=redis.Redis.from_url(stack.redis.url), serializer=SERIALIZER).enqueue(
            RUN_KIND_JOB, job_id, kind_name="demo", kind_args={"steps": 10},
            job_id=job_id)
        rec.wait_for(final_state_received(), timeout=30, what="final state")
    finally:
        rec.close()
        client.close()
    payloads = rec.payloads("updateProgress")
    assert {p["jobId"] for p in payloads} == {job_id}
    progress = [p["progress"] for p in payloads]
    assert progress == sorted(progress), progress
    assert payloads[0]["state"] == "queued" and payloads[0]["progress"] == 0
    assert payloads[-1] == demo_final(job_id)
    # After the state on connect, no step is skipped.
    running = [p["progress"] for p in payloads[1:] if p["state"] == "running"]
    assert running == list(range(10, 101, 10)), running


def test_client_connecting_after_the_end_gets_final_state_at_once(stack: Stack) -> None:
    job_id = stack.start_job()
    wait_until(lambda: stack.job_state(job_id)["state"] == "succeeded", timeout=30,
               what="job to finish")
    assert state_on_connect(stack.url, job_id, timeout=5) == (
        "updateProgress", demo_final(job_id))


def test_failing_job_ends_failed_with_message_pushed(stack: Stack) -> None:
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    job_id = new_id()
    JobStore(client).create(job_id, kind="test")
    rec = EventRecorder(stack.url, job_id)
    try:
        Queue("jobcast", connection=redis.Redis.from_url(stack.redis.url), serializer=SERIALIZER).enqueue(
            "tests.jobs.failing_job", job_id, job_id=job_id)
        rec.wait_for(final_state_received(), timeout=30, what="failed state")
    finally:
        rec.close()
        client.close()
    last = rec.payloads("updateProgress")[-1]
    assert last["state"] == "failed" and last["progress"] == 30
    assert "ValueError: disk on fire" in last["message"]
    assert stack.job_state(job_id)["state"] == "failed"


def test_wrong_token_against_real_server_changes_nothing(stack: Stack) -> None:
    job_id = stack.start_job()
    wait_until(lambda: stack.job_state(job_id)["state"] == "succeeded", timeout=30,
               what="job to finish")
    resp = stack.report({"jobId": job_id, "progress": 10, "state": "failed"}, token="nope")
    assert resp.status_code == 401
    assert stack.job_state(job_id)["state"] == "succeeded"


def test_refused_socket_connection_has_a_reason(stack: Stack) -> None:
    reasons: list[object] = []
    client = socketio.Client(reconnection=False)
    client.on("connect_error", reasons.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(stack.url + "?jobId=nope", transports=["websocket"], wait_timeout=5)
    assert reasons == [{"message": "jobId must be a UUID"}]
    assert requests.get(stack.url + "/", timeout=5).status_code == 200
