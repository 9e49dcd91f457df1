"""Never stuck, never misleading, on the real stack (Redis, gunicorn site, RQ worker).

* A job RQ fails before its code runs (unknown function, module that does not
  import, arguments that do not fit) ends ``failed`` with the reason, pushed.
* A job enqueued with ``enqueue_in`` runs after its delay (RQ's scheduler
  runs inside the worker).
* A state the worker's fallback stored while the site was unreachable reaches
  an open page without a message queue (website/realtime/relay.py).
* A worker whose callback address answers nothing says so in its log.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from rq import Queue
from rq.job import Job

from shared.protocol import RUN_KIND_JOB, new_id
from shared.rqconf import SERIALIZER
from shared.store import JobStore
from tests.conftest import Stack
from tests.support import (
    EventRecorder,
    Process,
    demo_final,
    final_state_received,
    free_port,
    start_worker,
    wait_until,
)


@pytest.fixture
def rq_conn(stack: Stack) -> Iterator[redis.Redis]:
    """A bytes client on the stack's Redis (RQ wants bytes)."""
    conn = redis.Redis.from_url(stack.redis.url)
    yield conn
    conn.close()


@pytest.fixture
def extra_workers(stack: Stack) -> Iterator[list[Process]]:
    """Workers a test starts beside the stack's; stopped at the end."""
    started: list[Process] = []
    yield started
    for proc in started:
        proc.stop()


def watch_new_job(stack: Stack) -> tuple[str, EventRecorder]:
    """Store a job like the site does and connect a Socket.IO client to its room."""
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    try:
        job_id = new_id()
        JobStore(client).create(job_id, kind="test")
    finally:
        client.close()
    return job_id, EventRecorder(stack.url, job_id)


@pytest.mark.parametrize("function, args, reason", [
    ("tests.jobs.no_such_job", (), "no_such_job"),
    ("tests.broken_jobs.job", (), "broken on purpose"),
    ("tests.jobs.failing_job", ("one", "two", "three"), "TypeError"),
], ids=["unknown-function", "module-fails-to-import", "bad-arguments"])
def test_job_rq_fails_before_its_code_ends_failed_with_the_reason_pushed(
        stack: Stack, rq_conn: redis.Redis, function: str, args: tuple[str, ...],
        reason: str) -> None:
    job_id, rec = watch_new_job(stack)
    try:
        Queue("jobcast", connection=rq_conn, serializer=SERIALIZER).enqueue(function, *args, job_id=job_id)
        rec.wait_for(final_state_received(), timeout=30, what="failed state pushed")
    finally:
        rec.close()
    last = rec.payloads("updateProgress")[-1]
    assert last["state"] == "failed", last
    assert reason in last["message"], last
    assert stack.job_state(job_id)["state"] == "failed"
    # RQ recorded the same failure
    wait_until(lambda: Job.fetch(job_id, connection=rq_conn, serializer=SERIALIZER).get_status() == "failed",
               timeout=10, what="RQ to mark the job failed")


def test_job_enqueued_with_a_delay_runs_after_it_on_the_worker(
        stack: Stack, rq_conn: redis.Redis) -> None:
    delay = 2
    queued_at = datetime.now(UTC)
    job = Queue("jobcast", connection=rq_conn, serializer=SERIALIZER).enqueue_in(
        timedelta(seconds=delay), "tests.jobs.noop")
    assert job.get_status(refresh=True) == "scheduled"
    wait_until(lambda: job.get_status(refresh=True) == "finished", timeout=delay + 20,
               interval=0.1, what="the scheduled job to run")
    job.refresh()
    assert job.started_at is not None
    started = job.started_at.replace(tzinfo=job.started_at.tzinfo or UTC)
    # RQ's scheduled registry keeps whole seconds: due at the second of now + delay
    due = (queued_at + timedelta(seconds=delay)).replace(microsecond=0)
    assert started >= due, (started, due)
    assert job.return_value() == "ok"


def test_state_stored_by_the_fallback_is_pushed_without_a_message_queue(
        stack: Stack, rq_conn: redis.Redis, extra_workers: list[Process]) -> None:
    # A worker on its own queue whose callbacks go nowhere: every update takes
    # the fallback (written to Redis); the site has no Socket.IO message queue.
    assert not stack.env.get("SOCKETIO_MESSAGE_QUEUE")
    dead = f"http://127.0.0.1:{free_port()}/api/progress"
    env = {**stack.env, "PROGRESS_URL": dead, "REPORT_RETRY_SECONDS": "0.2",
           "QUEUE_NAME": "fallback", "DEMO_STEP_DELAY": "0.02"}
    worker = start_worker(env, stack.log_dir, name=f"fallback-{new_id()[:8]}")
    extra_workers.append(worker)
    job_id, rec = watch_new_job(stack)
    try:
        Queue("fallback", connection=rq_conn, serializer=SERIALIZER).enqueue(
            RUN_KIND_JOB, job_id, kind_name="demo", kind_args={"steps": 10}, job_id=job_id)
        rec.wait_for(final_state_received(), timeout=40, what="final state pushed")
    finally:
        rec.close()
    assert rec.payloads("updateProgress")[-1] == demo_final(job_id)
    log = worker.log_tail(100_000)
    assert "storing its updates through the fallback" in log
    assert f"relay: pushed job {job_id} (succeeded)" in stack.web.log_tail(100_000)
    # and the worker said at start that nothing answers at its PROGRESS_URL
    assert f"WARNING worker: nothing answers at the callback URL {dead} (from SITE_URL" in log


def test_worker_warns_at_start_when_nothing_answers_at_site_url(
        stack: Stack, extra_workers: list[Process]) -> None:
    dead_site = f"http://127.0.0.1:{free_port()}"
    env = {**stack.env, "SITE_URL": dead_site, "QUEUE_NAME": "unused"}
    env.pop("PROGRESS_URL", None)
    worker = start_worker(env, stack.log_dir, name=f"lost-{new_id()[:8]}")
    extra_workers.append(worker)
    wait_until(lambda: "Listening on" in worker.log_tail(), timeout=20,
               what="the worker to start listening")
    log = worker.log_tail()
    assert f"WARNING worker: nothing answers at the callback URL {dead_site}/api/progress" in log
    assert worker.alive()  # a warning, not a stop
    # the stack's own worker, started after its site, warned about nothing
    assert "nothing answers" not in stack.worker.log_tail(100_000)
