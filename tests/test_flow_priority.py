"""Issue #27, section 4: priorities, on real processes (gunicorn, one RQ worker, and an
external worker claiming over HTTP).

A worker takes a higher priority first; a job's priority is its kind's default or
what its start asked for; only an operator may ask for more than the kind's default
(anyone else: 403 naming ``priority``, nothing stored); lowering is allowed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Stack
from tests.queue_flow import (
    OPS,
    claim,
    client_of,
    hold_worker,
    open_gate,
    post,
    queue_stack,
    ran,
)
from tests.support import wait_until


@pytest.fixture(scope="module")
def stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with queue_stack(log_dir, tmp_path_factory.mktemp("priority-redis")) as running:
        yield running


def test_the_worker_takes_high_then_normal_then_low(stack: Stack) -> None:
    hold_worker(stack, "order")
    post(stack, "bulky", "order", 1)  # low by its kind
    post(stack, "quick", "order", 2)  # normal
    post(stack, "quick", "order", 3, priority="low")  # lowered by its start: anyone may
    post(stack, "urgent", "order", 4)  # high by its kind
    post(stack, "quick", "order", 5, headers=OPS, priority="high")  # raised by an operator
    open_gate(stack, "order")
    wait_until(lambda: len(ran(stack, "order")) == 6, timeout=30, what="every job to run")
    assert ran(stack, "order") == ["gate:0", "urgent:4", "quick:5", "quick:2", "bulky:1",
                                   "quick:3"]


def test_only_operators_raise_a_priority(stack: Stack) -> None:
    client = client_of(stack)
    before = client.zcard("jobcast:idx:kind:quick")
    for body in ({"priority": "high"},):
        refused = post(stack, "quick", "refused", expect=403, **body)
        assert "priority" in refused["fields"], refused
        refused = post(stack, "bulky", "refused", expect=403, priority="normal")
        assert "priority" in refused["fields"], refused
    for bad in ("urgent!", 1, ["high"]):
        assert "priority" in post(stack, "quick", "refused", expect=400, priority=bad)["fields"]
    batch = requests.post(f"{stack.url}/api/batches", timeout=10, json={
        "kind": "quick", "items": [{"tag": "refused"}], "priority": "high"})
    assert batch.status_code == 403 and "priority" in batch.json()["fields"], batch.text
    assert client.zcard("jobcast:idx:kind:quick") == before  # nothing stored
    # A key is no operator either; the operator's token is.
    key = requests.post(f"{stack.url}/api/keys", headers=OPS, json={"name": "prog"},
                        timeout=10).json()["key"]
    post(stack, "quick", "refused", headers={"Authorization": f"Bearer {key}"}, expect=403,
         priority="high")
    job = post(stack, "quick", "raised", headers=OPS, priority="high")
    assert client.hget(f"jobcast:job:{job['id']}", "priority") == "high"
    # A kind's default needs no asking; lowering it is allowed to anyone.
    assert client.hget(f"jobcast:job:{post(stack, 'urgent', 'x')['id']}", "priority") == "high"
    lowered = post(stack, "urgent", "x", priority="low")
    assert client.hget(f"jobcast:job:{lowered['id']}", "priority") == "low"


def test_external_claims_take_high_then_normal_then_low(stack: Stack) -> None:
    ids = {}
    for priority in ("low", "normal", "high"):
        resp = requests.post(f"{stack.url}/api/jobs", headers=OPS, timeout=10,
                             json={"kind": "pager", "args": {}, "priority": priority})
        assert resp.status_code == 202, resp.text
        ids[resp.json()["id"]] = priority
    default = requests.post(f"{stack.url}/api/jobs", timeout=10,
                            json={"kind": "pager", "args": {}})  # high: its kind's default
    assert default.status_code == 202
    raised = requests.post(f"{stack.url}/api/jobs", timeout=10,
                           json={"kind": "external", "args": {}, "priority": "high"})
    assert raised.status_code == 403 and "priority" in raised.json()["fields"]
    got = [claim(stack, ["pager"]).json()["jobId"] for _ in range(4)]
    assert [ids.get(i, "default") for i in got] == ["high", "default", "normal", "low"]
    assert claim(stack, ["pager"]).status_code == 204
