"""Operations end to end: real Redis, gunicorn+eventlet site, RQ worker, Socket.IO
client, and the command-line reporter as a real subprocess."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from rq.job import Job

from shared.config import Config
from shared.protocol import new_id
from shared.rqconf import SERIALIZER
from shared.store import JobStore
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import (
    ROOT,
    TEST_OPS_TOKEN,
    TEST_PROGRESS_TOKEN,
    TEST_SECRET_KEY,
    EventRecorder,
    RedisServer,
    auth,
    create_job,
    final_state_received,
    free_port,
    stack_env,
    start_worker,
    wait_until,
)
from website import create_app

SLOW_STEP = "0.3"  # 10 steps: a demo job runs about 3 s


@pytest.fixture(scope="module")
def ops_stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose demo jobs are slow enough to be cancelled while running; with
    ``CANCEL_GRACE=0`` a cancel stops a running job at once, by force (the grace, and a
    worker that acknowledges: tests/test_flow_cancel.py)."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("ops-redis"),
                          DEMO_STEP_DELAY=SLOW_STEP, WORKER_TTL="20",
                          OPS_TOKEN=TEST_OPS_TOKEN, CANCEL_GRACE="0")
    yield running
    stop_stack(running)


def watch(stack: Stack, job_id: str) -> EventRecorder:
    return EventRecorder(stack.url, job_id)


def updates(rec: EventRecorder) -> list[dict[str, Any]]:
    return rec.payloads("updateProgress")


def has_update(**fields: Any) -> Any:
    def check(events: list[tuple[str, Any]]) -> bool:
        return any(name == "updateProgress" and all(data.get(k) == v for k, v in fields.items())
                   for name, data in events)
    return check


def running_at_least(progress: int) -> Any:
    def check(events: list[tuple[str, Any]]) -> bool:
        return any(name == "updateProgress" and data["state"] == "running"
                   and data["progress"] >= progress for name, data in events)
    return check


def rq_status(stack: Stack, job_id: str) -> str:
    conn = redis.Redis.from_url(stack.env["REDIS_URL"])
    try:
        return str(Job.fetch(job_id, connection=conn, serializer=SERIALIZER).get_status().value)
    finally:
        conn.close()


def cli(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**stack.env, "REPORT_RETRY_SECONDS": "2", **env}
    return subprocess.run([sys.executable, "-m", "worker.report", *args], env=environment,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_dashboard_receives_job_changes_live(ops_stack: Stack) -> None:
    page = requests.get(ops_stack.url + "/dashboard", headers=auth(TEST_OPS_TOKEN), timeout=5)
    assert page.status_code == 200
    token = re.search(r'data-token="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    rec = EventRecorder(ops_stack.url)
    try:
        refused = rec.client.call("watchDashboard", {"token": "forged"}, timeout=10)
        assert refused["ok"] is False
        ack = rec.client.call("watchDashboard", {"token": token}, timeout=10)
        assert ack["ok"] is True and ack["snapshot"]["cursor"] == ""
        job_id = ops_stack.start_job()

        def changes() -> list[dict[str, Any]]:
            return [p for p in rec.payloads("jobChanged") if p["jobId"] == job_id]

        rec.wait_for(lambda _: any(p["state"] == "succeeded" for p in changes()),
                     timeout=30, what="the job's end on the dashboard")
    finally:
        rec.close()
    seen = changes()
    assert seen[0]["created"] is True and seen[0]["kind"] == "demo"
    assert seen[0]["state"] == "queued"
    running = [p for p in seen if p["state"] == "running"]
    assert running and {p["stage"] for p in running} <= {"preparing", "crunching", "finishing"}
    assert [p["progress"] for p in seen] == sorted(p["progress"] for p in seen)
    assert not rec.payloads("updateProgress")  # the dashboard joined no job room
    # the dashboard snapshot now lists the job, with the worker that ran it.
    snap = EventRecorder(ops_stack.url)
    try:
        rows = snap.client.call("watchDashboard", {"token": token}, timeout=10)["snapshot"]["jobs"]
    finally:
        snap.close()
    row = next(r for r in rows if r["jobId"] == job_id)
    assert row["state"] == "succeeded" and row["worker"] == "worker"
    assert row["finishedAt"] >= row["startedAt"] >= row["createdAt"]


def test_cancel_stops_a_running_job_and_watchers_see_cancelled(ops_stack: Stack) -> None:
    created = create_job(ops_stack.url)
    job_id, owner = created["id"], auth(created["controlToken"])
    rec = watch(ops_stack, job_id)
    try:
        rec.wait_for(running_at_least(20), timeout=20, what="the job running")
        resp = requests.post(f"{ops_stack.url}/api/jobs/{job_id}/cancel", headers=owner,
                             timeout=5)
        assert resp.status_code == 200, resp.text
        rec.wait_for(final_state_received(), timeout=10, what="the cancelled state")
    finally:
        rec.close()
    last = updates(rec)[-1]
    assert last["state"] == "cancelled" and 20 <= last["progress"] < 100
    # RQ's stop-job command killed the work horse: RQ says "stopped", and the
    # worker's late reports changed nothing.
    wait_until(lambda: rq_status(ops_stack, job_id) == "stopped", timeout=15,
               what="RQ to record the stop")
    state = ops_stack.job_state(job_id)
    assert state["state"] == "cancelled" and state["progress"] == last["progress"]
    conflict = requests.post(f"{ops_stack.url}/api/jobs/{job_id}/cancel", headers=owner,
                             timeout=5)
    assert conflict.status_code == 409
    # the page shows it, and the worker is free for the next job.
    page = requests.get(f"{ops_stack.url}/jobs/{job_id}", timeout=5).text
    assert '<strong id="state">cancelled</strong>' in page
    next_id = ops_stack.start_job()
    wait_until(lambda: ops_stack.job_state(next_id)["state"] == "succeeded", timeout=30,
               what="the next job to succeed")


def test_retry_runs_a_failed_job_again(ops_stack: Stack) -> None:
    created = create_job(ops_stack.url)
    job_id, owner = created["id"], auth(created["controlToken"])
    rec = watch(ops_stack, job_id)
    try:
        rec.wait_for(running_at_least(10), timeout=20, what="the job running")
        # an external part reports the failure through the command-line reporter.
        failed = cli(ops_stack, job_id, "0", "--state", "failed", "--message", "disk full")
        assert failed.returncode == 0, failed.stderr
        rec.wait_for(has_update(state="failed"), timeout=10, what="failed")
        # the worker learns it from its next callback answer and stops; until
        # then a retry is refused as "still stopping".
        wait_until(lambda: requests.post(f"{ops_stack.url}/api/jobs/{job_id}/retry",
                                         headers=owner, timeout=5).status_code == 202,
                   timeout=15, interval=0.2, what="the retry to be accepted")
        rec.wait_for(has_update(state="succeeded"), timeout=30, what="the second run to end")
    finally:
        rec.close()
    states = [p["state"] for p in updates(rec)]
    second_run = states[states.index("failed") + 1:]
    # a queued job's place in line is pushed again while it waits (website/realtime/positions.py)
    steps = [state for i, state in enumerate(second_run) if i == 0 or state != second_run[i - 1]]
    assert steps == ["queued", "running", "succeeded"], states
    assert ops_stack.job_state(job_id)["progress"] == 100
    page = requests.get(f"{ops_stack.url}/jobs/{job_id}", timeout=5).text
    assert '<strong id="state">succeeded</strong>' in page


def test_cli_reporter_moves_an_external_jobs_progress(ops_stack: Stack) -> None:
    store = JobStore(redis.Redis.from_url(ops_stack.env["REDIS_URL"], decode_responses=True))
    job_id = new_id()
    store.create(job_id, kind="external")  # run by something else than our worker
    rec = watch(ops_stack, job_id)
    try:
        done = cli(ops_stack, job_id, "40", "--message", "resizing", "--stage", "resize")
        assert done.returncode == 0, done.stderr
        assert "applied" in done.stdout
        rec.wait_for(has_update(progress=40, state="running"), timeout=10, what="40%")
    finally:
        rec.close()
    assert updates(rec)[-1] == {"jobId": job_id, "progress": 40, "state": "running",
                                "message": "resizing", "stage": "resize"}
    assert requests.post(f"{ops_stack.url}/api/jobs/{job_id}/cancel",
                         headers=auth(TEST_OPS_TOKEN), timeout=5).ok
    ended = cli(ops_stack, job_id, "50")
    assert ended.returncode == 5, ended.stderr  # the job ended: stop working
    assert cli(ops_stack, new_id(), "10").returncode == 3  # unknown job
    assert cli(ops_stack, job_id, "10", PROGRESS_TOKEN="wrong").returncode == 3
    assert cli(ops_stack, job_id, "120").returncode == 2
    closed = cli(ops_stack, job_id, "10", "--url", f"http://127.0.0.1:{free_port()}/api/progress",
                 "--retry-seconds", "0.5")
    assert closed.returncode == 4
    assert ops_stack.job_state(job_id)["progress"] == 40


def metric(text: str, pattern: str) -> float:
    """The value of the one sample matching ``pattern`` (0 when absent)."""
    found = re.search(r"^" + pattern + r" (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_health_and_metrics_of_a_running_stack(ops_stack: Stack) -> None:
    health = requests.get(ops_stack.url + "/healthz", headers=auth(TEST_OPS_TOKEN), timeout=5)
    assert health.status_code == 200, health.text
    assert health.json()["workers"]["names"] == ["worker"]
    applied_re = r'jobcast_callbacks_total\{result="applied"\}'
    emits_re = r"jobcast_callback_emit_seconds_count"
    before = requests.get(ops_stack.url + "/metrics", headers=auth(TEST_OPS_TOKEN),
                          timeout=5).text
    # This test's own jobs: one runs to its end (11 callbacks), one is cancelled.
    job_id = ops_stack.start_job()
    wait_until(lambda: ops_stack.job_state(job_id)["state"] == "succeeded", timeout=30,
               what="the job to succeed")
    store = JobStore(redis.Redis.from_url(ops_stack.env["REDIS_URL"], decode_responses=True))
    cancelled = new_id()
    store.create(cancelled, kind="external")
    assert requests.post(f"{ops_stack.url}/api/jobs/{cancelled}/cancel",
                         headers=auth(TEST_OPS_TOKEN), timeout=5).ok
    text = requests.get(ops_stack.url + "/metrics", headers=auth(TEST_OPS_TOKEN), timeout=5).text
    assert metric(text, applied_re) - metric(before, applied_re) >= 11
    assert metric(text, emits_re) - metric(before, emits_re) >= 11
    assert metric(text, r'jobcast_jobs\{state="cancelled"\}') >= 1
    assert metric(text, r'jobcast_jobs\{state="succeeded"\}') >= 1
    assert metric(text, "jobcast_workers") == 1.0


def test_health_goes_503_when_redis_stops(log_dir: Path,
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    server = RedisServer(log_dir, tmp_path_factory.mktemp("health-redis")).start()
    env = stack_env(server.url, free_port(), WORKER_TTL="20")
    worker = start_worker(env, log_dir, name="health-worker")
    try:
        app = create_app(Config(environ={}, SECRET_KEY=TEST_SECRET_KEY,
                                PROGRESS_TOKEN=TEST_PROGRESS_TOKEN, WORKER_TOKEN="w", REDIS_URL=server.url,
                                ASYNC_MODE="threading", HEALTH_WORKER_MAX_AGE=30,
                                OPS_TOKEN=TEST_OPS_TOKEN))
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TEST_OPS_TOKEN}"
        up = client.get("/healthz")
        assert up.status_code == 200, up.get_json()
        assert up.get_json()["workers"]["names"] == ["health-worker"]
        server.stop()
        down = client.get("/healthz")
        assert down.status_code == 503
        body = down.get_json()
        assert body["status"] == "unavailable" and body["redis"]["ok"] is False
        assert body["workers"]["ok"] is False
    finally:
        worker.kill()
        server.stop()


def test_a_worker_stops_quietly_once_its_job_was_cancelled(ops_stack: Stack) -> None:
    from shared.callback import ProgressReporter
    from worker.boundary import JobEnded, checked_report, job_boundary

    store = JobStore(redis.Redis.from_url(ops_stack.env["REDIS_URL"], decode_responses=True))
    job_id = new_id()
    store.create(job_id, kind="external")
    reporter = ProgressReporter(ops_stack.url + "/api/progress", TEST_PROGRESS_TOKEN,
                                retry_seconds=2)
    checked_report(reporter, job_id, 30)  # running: carries on
    assert (reporter.last_applied, reporter.last_state, reporter.job_ended) == (
        True, "running", False)
    assert requests.post(f"{ops_stack.url}/api/jobs/{job_id}/cancel",
                         headers=auth(TEST_OPS_TOKEN), timeout=5).ok
    with pytest.raises(JobEnded):
        checked_report(reporter, job_id, 40)
    assert reporter.job_ended and reporter.last_state == "cancelled"
    steps = []
    with job_boundary(job_id, reporter):  # ends quietly: neither failed nor re-raised
        checked_report(reporter, job_id, 50)
        steps.append("after")
    assert steps == []
    assert ops_stack.job_state(job_id) == {"jobId": job_id, "progress": 30,
                                           "state": "cancelled", "message": "cancelled on request"}
