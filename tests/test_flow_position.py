"""Issue #27, section 7: position and wait of queued jobs, on real processes (gunicorn,
one RQ worker, Socket.IO clients, external jobs).

``position`` counts what really runs first (a higher priority's queue, fair share's
held jobs), ``eta`` comes from the kind's recent durations; both are in
``GET /api/jobs/<id>`` and pushed to the job's watchers as they change, at most about
once a second, and the page says them in words.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Stack
from tests.queue_flow import hold_worker, open_gate, post, queue_stack, wait_state
from tests.support import EventRecorder, wait_until


@pytest.fixture(scope="module")
def stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with queue_stack(log_dir, tmp_path_factory.mktemp("position-redis")) as running:
        yield running


def places(events: list[tuple[str, Any]]) -> list[int | None]:
    return [data.get("position") for name, data in events
            if name == "updateProgress" and "position" in data]


def test_positions_count_priority_and_fair_share_and_have_an_eta(stack: Stack) -> None:
    for n in range(3):  # durations for the kind's eta
        wait_state(stack, post(stack, "quick", "warm", n)["id"], "succeeded")
    hold_worker(stack, "line")
    jobs = [post(stack, "quick", "line", n)["id"] for n in range(1, 4)]
    states = [stack.job_state(job_id) for job_id in jobs]
    assert [s["position"] for s in states] == [1, 2, 3], states
    assert all(isinstance(s["eta"], int) and s["eta"] >= 0 for s in states), states
    assert all(s["paused"] is False and s["priority"] == "normal" for s in states)
    urgent = post(stack, "urgent", "line", 9)["id"]  # high: goes first
    assert stack.job_state(urgent)["position"] == 1
    assert stack.job_state(urgent)["eta"] is None  # no duration of its kind yet
    assert [stack.job_state(j)["position"] for j in jobs] == [2, 3, 4]
    assert "4th in line, about" in requests.get(f"{stack.url}/jobs/{jobs[2]}", timeout=10).text
    open_gate(stack, "line")
    for job_id in jobs:
        done = wait_state(stack, job_id, "succeeded")
        assert "position" not in done and "eta" not in done


def test_positions_are_pushed_as_they_change_at_most_once_a_second(stack: Stack) -> None:
    hold_worker(stack, "push-1")
    first = post(stack, "quick", "push", 1)["id"]
    second_gate = post(stack, "gate", "push-2")["id"]
    watched = post(stack, "quick", "push", 2)["id"]
    recorder = EventRecorder(stack.url, watched)
    try:
        recorder.wait_for(lambda ev: 3 in places(ev), timeout=10, what="position 3")
        with pytest.raises(TimeoutError):  # nothing moves: nothing more is pushed
            recorder.wait_for(lambda ev: len(places(ev)) > 1, timeout=2.5,
                              what="another place")
        assert places(recorder.events) == [3]
        late = EventRecorder(stack.url, watched)  # a newcomer is told within a tick
        try:
            late.wait_for(lambda ev: 3 in places(ev), timeout=5, what="position for a newcomer")
        finally:
            late.close()
        assert places(recorder.events) == [3]
        open_gate(stack, "push-1")  # the first gate ends, "first" runs, the second gate holds
        wait_state(stack, first, "succeeded")
        wait_state(stack, second_gate, "running")
        recorder.wait_for(lambda ev: places(ev)[-1:] == [1], timeout=5, what="position 1")
        assert places(recorder.events) in ([3, 1], [3, 2, 1])
        open_gate(stack, "push-2")
        recorder.wait_for(lambda ev: any(d.get("state") == "succeeded" for n, d in ev
                                         if n == "updateProgress"), timeout=20, what="the end")
    finally:
        recorder.close()


def test_external_jobs_have_positions_too(stack: Stack) -> None:
    ids = [requests.post(f"{stack.url}/api/jobs", timeout=10,
                         json={"kind": "pager", "args": {"n": n}}).json()["id"]
           for n in range(3)]
    assert [stack.job_state(i)["position"] for i in ids] == [1, 2, 3]
    wait_until(lambda: requests.post(
        f"{stack.url}/api/workers/claim", timeout=10,
        headers={"Authorization": f"Bearer {stack.env['WORKER_TOKEN']}"},
        json={"kinds": ["pager"], "worker": "w"}).status_code == 200, what="a claim")
    assert [stack.job_state(i).get("position") for i in ids] == [None, 1, 2]
