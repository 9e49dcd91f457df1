"""The overview on a real stack: jobs run by a real worker, succeeding and failing,
count in the history as they end, and GET /api/ops/overview agrees with /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Stack, start_stack, stop_stack
from tests.support import TEST_OPS_TOKEN, auth, wait_until

OPS = auth(TEST_OPS_TOKEN)


@pytest.fixture(scope="module")
def stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(log_dir, tmp_path_factory.mktemp("overview-redis"),
                          JOB_KINDS="tests.overview_kinds", RATE_LIMIT="0")
    yield running
    stop_stack(running)


def start(stack: Stack, kind: str, n: int) -> str:
    resp = requests.post(f"{stack.url}/api/jobs", json={"kind": kind, "args": {"n": n}},
                         timeout=10)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def overview(stack: Stack, **headers: str) -> requests.Response:
    return requests.get(f"{stack.url}/api/ops/overview", headers=headers or OPS, timeout=10)


def kind_row(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(k for k in body["kinds"] if k["kind"] == kind)


def test_jobs_a_worker_ends_count_and_agree_with_metrics(stack: Stack) -> None:
    ids = [start(stack, "tidy", n) for n in range(3)] + [start(stack, "broken", 7)]
    wait_until(lambda: all(stack.job_state(i)["state"] in ("succeeded", "failed") for i in ids),
               timeout=30, what="the jobs to end")
    body = overview(stack).json()
    tidy, broken = kind_row(body, "tidy"), kind_row(body, "broken")
    assert (tidy["succeeded"], tidy["failed"], broken["failed"]) == (3, 0, 1), body["kinds"]
    assert broken["failureRate"] == 1.0 and tidy["p50"] is not None
    assert "broken on purpose (7)" in broken["lastFailure"]["message"]
    assert broken["lastFailure"]["jobId"] == ids[-1]
    assert sum(body["series"]["succeeded"]) == 3 and sum(body["series"]["failed"]) == 1
    text = requests.get(f"{stack.url}/metrics", headers=OPS, timeout=10).text
    assert 'jobcast_jobs_ended_total{kind="tidy",outcome="succeeded"} 3.0' in text
    assert 'jobcast_jobs_ended_total{kind="broken",outcome="failed"} 1.0' in text
    for state, count in body["states"].items():
        assert f'jobcast_jobs_in_state{{state="{state}"}} {float(count)}' in text


def test_no_operator_no_overview(stack: Stack) -> None:
    assert overview(stack, Accept="application/json").status_code == 401
    assert overview(stack, Authorization="Bearer not-the-token").status_code == 401
    api_key = requests.post(f"{stack.url}/api/keys", headers=OPS, json={"name": "ov"},
                            timeout=10).json()["key"]
    assert overview(stack, Authorization=f"Bearer {api_key}").status_code == 401
    assert requests.get(f"{stack.url}/api/ops/overview?window=1w", headers=OPS,
                        timeout=10).status_code == 400
