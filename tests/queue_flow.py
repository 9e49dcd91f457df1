"""Helpers of the priority, pause and position tests (tests/test_flow_*.py): a stack
running tests/flow_queue_kinds.py with one in-process RQ worker, and its jobs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import requests

from tests.conftest import Stack, start_stack, stop_stack
from tests.flow_queue_kinds import gate_key, ran_key
from tests.support import TEST_OPS_TOKEN, TEST_WORKER_TOKEN, auth, wait_until

OPS = auth(TEST_OPS_TOKEN)
WORKER = auth(TEST_WORKER_TOKEN)


@contextmanager
def queue_stack(log_dir: Path, data_dir: Path) -> Iterator[Stack]:
    """A stack with the test kinds and one SimpleWorker (jobs run one at a time, in order)."""
    running = start_stack(log_dir, data_dir, JOB_KINDS="tests.flow_queue_kinds",
                          WORKER_CLASS="simple", RATE_LIMIT="0")
    try:
        yield running
    finally:
        stop_stack(running)


def client_of(stack: Stack) -> redis.Redis:
    """A str client on the stack's Redis."""
    return redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)


def post(stack: Stack, kind: str, tag: str, n: int = 0, headers: dict[str, str] | None = None,
         expect: int = 202, **body: Any) -> dict[str, Any]:
    """``POST /api/jobs`` of ``kind`` with ``{"tag", "n"}``; the answer's JSON."""
    resp = requests.post(f"{stack.url}/api/jobs", headers=headers or {}, timeout=10,
                         json={"kind": kind, "args": {"tag": tag, "n": n}, **body})
    assert resp.status_code == expect, resp.text
    return resp.json()  # type: ignore[no-any-return]


def hold_worker(stack: Stack, tag: str) -> str:
    """Start a gate job and wait until the worker runs it: the worker is busy until
    :func:`open_gate`; the gate job's id."""
    job_id = str(post(stack, "gate", tag)["id"])
    wait_until(lambda: stack.job_state(job_id)["state"] == "running", timeout=20,
               what="the gate job to run")
    return job_id


def open_gate(stack: Stack, tag: str) -> None:
    """Let the gate job of ``tag`` end."""
    client_of(stack).set(gate_key(tag), "1", ex=600)


def ran(stack: Stack, tag: str) -> list[str]:
    """What the jobs of ``tag`` ran, in order (``"<kind>:<n>"``)."""
    return list(client_of(stack).lrange(ran_key(tag), 0, -1))


def wait_state(stack: Stack, job_id: str, state: str, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until the job is in ``state``; its JSON state."""
    return wait_until(lambda: (s := stack.job_state(job_id))["state"] == state and s,
                      timeout=timeout, what=f"job {job_id} to be {state}")


def claim(stack: Stack, kinds: list[str], wait: float = 0) -> requests.Response:
    """An external worker's claim over HTTP."""
    return requests.post(f"{stack.url}/api/workers/claim", headers=WORKER, timeout=wait + 10,
                         json={"kinds": kinds, "worker": "flow-test", "wait": wait})


def claimed(stack: Stack, kind: str) -> dict[str, Any]:
    """A job of ``kind`` an external worker claimed (waiting up to 5 s for one)."""
    resp = claim(stack, [kind], wait=5)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def beat(stack: Stack, job_id: str) -> dict[str, Any]:
    """An external worker's heartbeat for ``job_id``: what it answers for that job."""
    resp = requests.post(f"{stack.url}/api/workers/heartbeat", headers=WORKER,
                         json={"jobIds": [job_id]}, timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.json()["jobs"][0]  # type: ignore[no-any-return]
