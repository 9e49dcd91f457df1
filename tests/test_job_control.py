"""Cancel under pressure, with real processes: a cancel racing the job's own
end (with ``CANCEL_GRACE=0``: a running job is cancelled at once), and a cancel
of a running job on the ``simple`` worker (no work horse to kill: the job learns
it from its next callback answer, stops, and says so). The grace period itself:
tests/test_flow_cancel.py."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from shared.protocol import APPLIED_HEADER, new_id
from shared.store import JobStore
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import (
    TEST_OPS_TOKEN,
    EventRecorder,
    auth,
    final_state_received,
    simulate_work,
    wait_until,
)


def race(stack: Stack, job_id: str,
         lead: float) -> tuple[requests.Response, requests.Response]:
    """POST the job's ``succeeded`` and its cancel together, the cancel ``lead``
    seconds earlier (later when negative); both answers."""
    answers: dict[str, requests.Response] = {}
    start = threading.Barrier(2)

    def send(name: str, delay: float, post: Callable[[], requests.Response]) -> None:
        start.wait()
        simulate_work(max(0.0, delay))  # the race's lead, by design: not a wait for a state
        answers[name] = post()

    threads = [
        threading.Thread(target=send, args=("cancel", -lead, lambda: requests.post(
            f"{stack.url}/api/jobs/{job_id}/cancel", timeout=5, headers=auth(TEST_OPS_TOKEN)))),
        threading.Thread(target=send, args=("end", lead, lambda: requests.post(
            stack.url + "/api/progress", headers=auth(), timeout=5,
            json={"jobId": job_id, "progress": 100, "state": "succeeded"}))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return answers["end"], answers["cancel"]


@pytest.fixture(scope="module")
def at_once_stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack where a cancel ends even a running job at once (no grace)."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("at-once"), CANCEL_GRACE="0")
    yield running
    stop_stack(running)


def test_cancel_racing_the_jobs_end_has_exactly_one_winner(at_once_stack: Stack) -> None:
    stack = at_once_stack
    store = JobStore(redis.Redis.from_url(stack.redis.url, decode_responses=True))
    outcomes = {"cancel won": 0, "end won": 0}
    for step in range(20):  # from the end 20 ms ahead to the cancel 18 ms ahead
        job_id = new_id()
        store.create(job_id, kind="race")
        assert stack.report({"jobId": job_id, "progress": 50, "state": "running"}).ok
        end, cancelled = race(stack, job_id, lead=(step - 10) * 0.002)
        assert end.status_code == 204 and cancelled.status_code in (200, 409), cancelled.text
        final = stack.job_state(job_id)
        if cancelled.status_code == 200:
            assert end.headers[APPLIED_HEADER] == "0"
            assert final["state"] == "cancelled" and final["progress"] == 50
            assert cancelled.json()["state"] == final
            outcomes["cancel won"] += 1
        else:
            assert end.headers[APPLIED_HEADER] == "1"
            assert final["state"] == "succeeded" and final["progress"] == 100
            assert "succeeded" in cancelled.json()["error"]
            outcomes["end won"] += 1
    assert min(outcomes.values()) > 0 and sum(outcomes.values()) == 20, outcomes


@pytest.fixture
def simple_stack(log_dir: Path, tmp_path: Path) -> Iterator[Stack]:
    """A stack whose worker is RQ's SimpleWorker; a demo job runs about 10 s."""
    running = start_stack(log_dir, tmp_path / "redis", WORKER_CLASS="simple",
                          DEMO_STEP_DELAY="1", JOB_TIMEOUT="60")
    yield running
    stop_stack(running)


def running_at_least(progress: int) -> Any:
    def check(events: list[tuple[str, Any]]) -> bool:
        return any(name == "updateProgress" and data["state"] == "running"
                   and data["progress"] >= progress for name, data in events)
    return check


def test_cancel_stops_a_running_job_on_the_simple_worker(simple_stack: Stack) -> None:
    job_id = simple_stack.start_job()
    rec = EventRecorder(simple_stack.url, job_id)
    try:
        rec.wait_for(running_at_least(20), timeout=20, what="the job running")
        resp = requests.post(f"{simple_stack.url}/api/jobs/{job_id}/cancel", timeout=5,
                             headers=auth(TEST_OPS_TOKEN))
        assert resp.status_code == 200, resp.text
        rec.wait_for(final_state_received(), timeout=10, what="the cancelled state")
    finally:
        rec.close()
    payloads = rec.payloads("updateProgress")
    last = payloads[-1]
    assert last["state"] == "cancelled" and 20 <= last["progress"] < 100
    assert any(p.get("cancelRequested") for p in payloads)  # "stopping…" first
    # No work horse to kill: the answer to the job's next report says it was asked
    # to stop; its context raises CancelRequested, and it reports cancelled, well
    # before its tenth step.
    wait_until(lambda: f"job {job_id} stopped on request"
               in simple_stack.worker.log_tail(100_000), timeout=5,
               what="the job to stop on the simple worker")
    assert simple_stack.worker.alive()
    state = simple_stack.job_state(job_id)
    assert state["state"] == "cancelled" and state["progress"] == last["progress"]
    assert state["message"] == "cancelled on request; the worker stopped"
    # The same worker process takes the next job.
    next_id = simple_stack.start_job()
    wait_until(lambda: simple_stack.job_state(next_id)["state"] == "running", timeout=10,
               what="the next job to start")
