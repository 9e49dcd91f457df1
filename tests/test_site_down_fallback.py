"""The worker's fallback with real processes: the site's callback URL is dead,
so every report goes to the job store directly and out through the Socket.IO
message queue, and a client connected to the web process still sees the job
run to its end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from rq import Queue

from shared import keys
from shared.protocol import RUN_KIND_JOB, new_id
from shared.rqconf import SERIALIZER
from shared.store import JobStore
from tests.support import (
    TEST_OPS_TOKEN,
    EventRecorder,
    Process,
    RedisServer,
    auth,
    demo_final,
    final_state_received,
    free_port,
    job_state,
    stack_env,
    start_web,
    start_worker,
    wait_until,
)
from tests.test_webhooks import Receiver

HOOK_SECRET = "fallback-webhook-secret"


def operator_state(url: str, job_id: str) -> dict[str, Any]:
    """The job's JSON as an operator reads it (a webhook's delivery shows to them)."""
    resp = requests.get(f"{url}/api/jobs/{job_id}", headers=auth(TEST_OPS_TOKEN), timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


@dataclass
class SplitStack:
    """A web process and a worker that cannot reach it, on one Redis."""

    redis: RedisServer
    web: Process
    worker: Process
    url: str


@pytest.fixture
def split_stack(log_dir: Path, tmp_path: Path) -> Iterator[SplitStack]:
    """Web with the message queue; a worker whose PROGRESS_URL points at a dead port."""
    server = RedisServer(log_dir, tmp_path / "redis").start()
    env = stack_env(server.url, free_port(), SOCKETIO_MESSAGE_QUEUE=server.url,
                    DEMO_STEP_DELAY="0.05", WEBHOOK_SECRET=HOOK_SECRET,
                    WEBHOOK_ALLOWED_HOSTS="127.0.0.1")
    procs: list[Process] = [server]
    try:
        web = start_web(env, log_dir, name="web-split")
        procs.append(web)
        dead = f"http://127.0.0.1:{free_port()}/api/progress"
        worker = start_worker({**env, "PROGRESS_URL": dead, "REPORT_RETRY_SECONDS": "0.3"},
                              log_dir, name="worker-split")
        procs.append(worker)
        procs.append(start_worker(env, log_dir, name="webhooks-split", args=["--webhooks"]))
        yield SplitStack(server, web, worker, env["SITE_URL"])
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_site_unreachable_reports_go_through_the_store_and_message_queue(
        split_stack: SplitStack) -> None:
    client = redis.Redis.from_url(split_stack.redis.url, decode_responses=True)
    job_id = new_id()
    JobStore(client).create(job_id, kind="demo")
    rec = EventRecorder(split_stack.url, job_id)
    try:
        rec.wait_for(lambda ev: len(ev) >= 1, what="state on connect")
        Queue("jobcast", connection=redis.Redis.from_url(split_stack.redis.url),
              serializer=SERIALIZER).enqueue(
            RUN_KIND_JOB, job_id, kind_name="demo", kind_args={"steps": 10},
            job_id=job_id)
        rec.wait_for(final_state_received(), timeout=30, what="final state via the queue")
    finally:
        rec.close()
        client.close()
    payloads = rec.payloads("updateProgress")
    assert payloads[-1] == demo_final(job_id)
    running = [p["progress"] for p in payloads if p["state"] == "running"]
    assert running == list(range(10, 101, 10)), payloads
    assert job_state(split_stack.url, job_id)["state"] == "succeeded"
    log = split_stack.worker.log_tail(200_000)
    # The first report waited for the site, then every report went through the fallback.
    assert log.count("storing its updates through the fallback") == 1, log[-2000:]


def test_a_job_the_fallback_ends_still_calls_its_webhook(split_stack: SplitStack) -> None:
    """The site never sees the end, so the worker hands the delivery over itself."""
    client = redis.Redis.from_url(split_stack.redis.url, decode_responses=True)
    receiver = Receiver([])
    job_id = new_id()
    try:
        JobStore(client).create(job_id, kind="demo")
        client.hset(keys.job_key(job_id), "webhook", f"http://127.0.0.1:{receiver.port}/end")
        Queue("jobcast", connection=redis.Redis.from_url(split_stack.redis.url),
              serializer=SERIALIZER).enqueue(
            RUN_KIND_JOB, job_id, kind_name="demo", kind_args={"steps": 2}, job_id=job_id)
        wait_until(lambda: receiver.received, timeout=30, what="the webhook after a fallback end")
        state = wait_until(lambda: (s := operator_state(split_stack.url, job_id)).get(
            "webhook", {}).get("state") == "delivered" and s, timeout=10, what="delivered")
    finally:
        receiver.close()
        client.close()
    assert state["state"] == "succeeded"
    assert len(receiver.received) == 1
    assert json.loads(receiver.received[0][1])["jobId"] == job_id
