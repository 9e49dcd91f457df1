"""Attacks from issue #13 end to end: real Redis, gunicorn+eventlet site, RQ worker
processes, raw sockets and a real Socket.IO client."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from rq import Queue
from rq.job import Job

from shared.callback import ProgressReporter
from shared.protocol import seq_limit
from shared.rqconf import SERIALIZER
from shared.signing import sign_job_token
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import (
    TEST_OPS_TOKEN,
    TEST_SECRET_KEY,
    EventRecorder,
    RedisServer,
    auth,
    create_job,
    csrf_token_in,
    free_port,
    stack_env,
    start_web,
    start_worker,
    wait_until,
)
from tests.test_startup import run_without_secrets
from worker.boundary import checked_report, job_boundary

BODY_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def slow_stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Demo jobs of about 3 s, an operator token and a short body read timeout."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("attack-redis"),
                          DEMO_STEP_DELAY="0.3", OPS_TOKEN=TEST_OPS_TOKEN,
                          REQUEST_BODY_TIMEOUT=str(BODY_TIMEOUT))
    yield running
    stop_stack(running)


def progress_of(stack: Stack, job_id: str) -> tuple[str, int]:
    state = stack.job_state(job_id)
    return str(state["state"]), int(state["progress"])


def test_a_strangers_cancel_is_refused_and_the_job_runs_on(slow_stack: Stack) -> None:
    job_id = create_job(slow_stack.url)["id"]
    wait_until(lambda: progress_of(slow_stack, job_id)[1] >= 10, timeout=20,
               what="the job running")
    stranger = requests.Session()
    refused = stranger.post(f"{slow_stack.url}/api/jobs/{job_id}/cancel", timeout=5)
    assert refused.status_code == 403
    page = stranger.get(f"{slow_stack.url}/jobs/{job_id}", timeout=5).text
    assert "cancel-form" not in page
    form = stranger.post(f"{slow_stack.url}/jobs/{job_id}/cancel", timeout=5,
                         data={"csrf_token": csrf_token_in(stranger.get(slow_stack.url + "/").text)})
    assert form.status_code == 403
    state, progress = progress_of(slow_stack, job_id)
    assert state == "running"
    # the worker keeps running it to the end
    wait_until(lambda: progress_of(slow_stack, job_id) == ("succeeded", 100), timeout=30,
               what="the job to succeed")


def test_a_job_blocked_by_a_high_seq_recovers_on_retry(slow_stack: Stack) -> None:
    job_id, operator = create_job(slow_stack.url)["id"], auth(TEST_OPS_TOKEN)
    wait_until(lambda: progress_of(slow_stack, job_id)[1] >= 10, timeout=20,
               what="the job running")
    # the highest seq the site accepts now: every later report of this attempt is dropped
    high = slow_stack.report({"jobId": job_id, "progress": 50, "state": "running",
                              "seq": seq_limit(time.time()) - 10**6})
    assert high.status_code == 204
    assert requests.post(f"{slow_stack.url}/api/jobs/{job_id}/cancel", headers=operator,
                         timeout=5).status_code == 200
    wait_until(lambda: requests.post(f"{slow_stack.url}/api/jobs/{job_id}/retry",
                                     headers=operator, timeout=5).status_code == 202,
               timeout=15, interval=0.2, what="the retry to be accepted")
    wait_until(lambda: progress_of(slow_stack, job_id) == ("succeeded", 100), timeout=30,
               what="the retried job to succeed")
    # the first attempt's worker, still reporting, learns it was superseded and stops quietly
    stale = ProgressReporter(slow_stack.url + "/api/progress",
                             sign_job_token(TEST_SECRET_KEY, job_id, 1), retry_seconds=2)
    with job_boundary(job_id, stale):
        checked_report(stale, job_id, 70)
        raise AssertionError("checked_report should have ended the job quietly")
    assert stale.superseded and stale.job_ended
    assert progress_of(slow_stack, job_id) == ("succeeded", 100)
    # and a seq beyond the bound is refused outright
    assert slow_stack.report({"jobId": job_id, "progress": 60, "state": "running",
                              "seq": 2**53 - 1}).status_code == 400


def test_a_stalled_request_body_is_cut_off(slow_stack: Stack) -> None:
    port = int(slow_stack.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /api/progress HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: Bearer test-progress-token\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n"
                     b'{"jobId": "')
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(4096):  # until the server closes (or 10 s: fail)
            answer += chunk
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert elapsed < BODY_TIMEOUT + 5, elapsed
    assert requests.get(slow_stack.url + "/", timeout=5).status_code == 200


def test_socketio_drops_a_client_sending_a_big_message(slow_stack: Stack) -> None:
    job_id = create_job(slow_stack.url)["id"]
    polite = EventRecorder(slow_stack.url)
    rude = EventRecorder(slow_stack.url)
    try:
        assert polite.client.call("subscribe", {"jobId": job_id}, timeout=10)["ok"] is True
        rude.client.emit("subscribe", {"jobId": job_id, "padding": "x" * 8000})
        wait_until(lambda: not rude.client.connected, timeout=10,
                   what="the server to drop the client")
        assert polite.client.connected
    finally:
        polite.close()
        if rude.client.connected:
            rude.close()


def test_the_worker_runs_without_secret_key_and_keeps_tokens_out_of_its_log(
        log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    server = RedisServer(log_dir, tmp_path_factory.mktemp("nokey-redis")).start()
    env = stack_env(server.url, free_port())
    web = start_web(env, log_dir, name="web-nokey")
    worker_env = {k: v for k, v in env.items() if k != "SECRET_KEY"}
    worker = start_worker(worker_env, log_dir, name="worker-nokey")
    try:
        created = create_job(env["SITE_URL"])
        job_id = created["id"]
        wait_until(lambda: requests.get(f"{env['SITE_URL']}/api/jobs/{job_id}", timeout=5)
                   .json()["state"] == "succeeded", timeout=30, what="the job to succeed")
        # a highlight job whose snippet is gone fails in the worker, with its token
        conn = redis.Redis.from_url(server.url)
        failing = "0" * 8 + job_id[8:]
        token = sign_job_token(TEST_SECRET_KEY, failing)
        Queue(env.get("QUEUE_NAME", "jobcast"), connection=conn, serializer=SERIALIZER).enqueue(
            "worker.highlight.highlight_job", failing, snippet_id=job_id, token=token,
            job_id=failing)
        wait_until(lambda: Job.fetch(failing, connection=conn,
                                     serializer=SERIALIZER).get_status() == "failed",
                   timeout=30, what="the failing job to fail")
        wait_until(lambda: "exception raised while executing" in worker.log_tail(100_000),
                   timeout=10, what="RQ to log the failure")
        assert token not in worker.log_tail(1_000_000)
    finally:
        worker.stop()
        web.stop()
        server.stop()


def test_the_worker_warns_about_development_secrets(log_dir: Path, redis_url: str) -> None:
    env = stack_env(redis_url, free_port(), JOBCAST_ENV="development")
    for name in ("SECRET_KEY", "PROGRESS_TOKEN"):
        env.pop(name)
    worker = start_worker(env, log_dir, name="worker-dev")
    try:
        wait_until(lambda: "DEVELOPMENT SECRETS IN USE" in worker.log_tail(), timeout=10,
                   what="the warning")
    finally:
        worker.stop()


def test_the_site_with_development_secrets_refuses_to_listen_beyond_loopback() -> None:
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    result = run_without_secrets([gunicorn, "website:create_app()"], JOBCAST_ENV="development",
                                 WEB_BIND=f"0.0.0.0:{free_port()}")
    assert result.returncode != 0
    assert "jobcast web: configuration error" in result.stderr
    assert "development secrets" in result.stderr and "Traceback" not in result.stderr
