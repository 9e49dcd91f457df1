"""Per-key concurrency (issue 27, section 5) on real processes: a site, two RQ worker
processes and external workers claiming over HTTP, with the kinds of
tests/concurrency_kinds.py (``{"limit": 1, "key": "account"}``).

Jobs of one account never overlap; other accounts run beside them, also for the
same tenant (a held job keeps no fair-share place); a held job says which limit
holds it, in ``GET /api/jobs/<id>`` and pushed to its page, and starts when the
running one ends, is cancelled, or its slot is healed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from shared import keys
from shared.config import WORKER, Config
from shared.protocol import CANCELLED
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import (
    TEST_WORKER_TOKEN,
    EventRecorder,
    Process,
    auth,
    start_worker,
    wait_until,
)
from worker.core import lifecycle

HELD_TEXT = "1 of 1 running for account=acme"


@pytest.fixture(scope="module")
def site(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack declaring the limited kinds, with a second RQ worker process."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("conc-redis"),
                          JOB_KINDS="tests.concurrency_kinds", RATE_LIMIT="0", CANCEL_GRACE="0",
                          RATE_LIMIT_GLOBAL="0")
    second: Process | None = None
    try:
        second = start_worker(running.env, log_dir, name="conc-worker-2")
        yield running
    finally:
        if second is not None:
            second.stop()
        stop_stack(running)


CONTROL: dict[str, str] = {}


def start(site: Stack, kind: str, account: str, hold: float = 0.5) -> str:
    resp = requests.post(site.url + "/api/jobs", timeout=5,
                         json={"kind": kind, "args": {"account": account, "hold": hold}})
    assert resp.status_code == 202, resp.text
    CONTROL[resp.json()["id"]] = resp.json()["controlToken"]
    return str(resp.json()["id"])


def ended(site: Stack, job_id: str, timeout: float = 30) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        state = site.job_state(job_id)
        return state if state["state"] in ("succeeded", "failed", "cancelled") else None
    return wait_until(done, timeout=timeout, what=f"job {job_id} to end")


def overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["started"] < b["finished"] and b["started"] < a["finished"]


def claim(site: Stack, wait: float = 0) -> dict[str, Any] | None:
    resp = requests.post(site.url + "/api/workers/claim", headers=auth(TEST_WORKER_TOKEN),
                         json={"kinds": ["ext_per_account"], "worker": "tester", "wait": wait},
                         timeout=wait + 10)
    assert resp.status_code in (200, 204), resp.text
    return resp.json() if resp.status_code == 200 else None


def succeed(site: Stack, got: dict[str, Any]) -> None:
    resp = requests.post(site.url + "/api/progress", headers=auth(got["token"]), timeout=5,
                         json={"jobId": got["jobId"], "state": "succeeded"})
    assert resp.status_code == 204, resp.text


def test_one_job_per_account_at_a_time_while_other_accounts_run_beside_it(site: Stack) -> None:
    acme = [start(site, "per_account", "acme", hold=0.6) for _ in range(3)]
    beta = start(site, "per_account", "beta", hold=0.6)  # same tenant, behind acme's jobs
    results = {job_id: ended(site, job_id)["result"] for job_id in [*acme, beta]}
    for job_id, result in results.items():
        assert set(result) == {"started", "finished"}, (job_id, result)
    runs = [results[job_id] for job_id in acme]
    for i, first in enumerate(runs):
        for second in runs[i + 1:]:
            assert not overlap(first, second), runs  # never two of acme's at once
    # beta did not wait for acme's three (held ones keep no fair-share place)
    assert any(overlap(results[beta], run) for run in runs), results
    assert results[beta]["finished"] < runs[-1]["started"] + 0.6, results


def test_a_held_job_says_which_limit_holds_it_then_starts_when_the_slot_frees(
        site: Stack) -> None:
    first = start(site, "per_account", "acme", hold=1.5)
    held = start(site, "per_account", "acme", hold=0.1)
    state = site.job_state(held)
    assert state["state"] == "queued"
    assert state["heldBy"] == {"limit": 1, "running": 1, "key": "account", "value": "acme",
                               "text": HELD_TEXT}
    assert "heldBy" not in site.job_state(first)
    recorder = EventRecorder(site.url, held)
    try:  # pushed to its page: on connect, held; then let through, running and done
        events = recorder.wait_for(
            lambda ev: any(n == "updateProgress" and d.get("state") == "succeeded"
                           for n, d in ev), timeout=30, what="the held job to succeed")
        pushed = [d for n, d in events if n == "updateProgress"]
        assert pushed[0]["heldBy"]["text"] == HELD_TEXT
        # (while it waits its place in line may be pushed too, still held)
        assert all("heldBy" not in d for d in pushed if d["state"] != "queued"), pushed
    finally:
        recorder.close()
    page = requests.get(f"{site.url}/jobs/{held}", timeout=5)
    assert "for account=acme" not in page.text  # ended: no longer said
    assert ended(site, first)["state"] == "succeeded"


def test_the_job_page_says_in_words_what_holds_a_job(site: Stack) -> None:
    first = start(site, "per_account", "page", hold=1.0)
    held = start(site, "per_account", "page", hold=0.1)
    page = requests.get(f"{site.url}/jobs/{held}", timeout=5).text
    assert ('Waiting for a free slot: <span id="held-text">1 of 1 running for account=page'
            '</span>') in page
    assert ended(site, held)["state"] == "succeeded" and site.job_state(first)["result"]


def test_cancelling_the_running_job_frees_its_slot(site: Stack) -> None:
    running = start(site, "per_account", "gamma", hold=60)
    held = start(site, "per_account", "gamma", hold=0.1)
    wait_until(lambda: site.job_state(running)["state"] == "running", timeout=15,
               what="the first job to run")
    assert site.job_state(held)["heldBy"]["value"] == "gamma"
    resp = requests.post(f"{site.url}/api/jobs/{running}/cancel", timeout=5,
                         headers=auth(CONTROL[running]))
    assert resp.status_code == 200, resp.text
    assert ended(site, held, timeout=15)["state"] == "succeeded"


def test_a_cancelled_held_job_never_runs_and_the_next_one_does(site: Stack) -> None:
    first = start(site, "per_account", "delta", hold=1.0)
    dropped = start(site, "per_account", "delta", hold=0.1)
    after = start(site, "per_account", "delta", hold=0.1)
    resp = requests.post(f"{site.url}/api/jobs/{dropped}/cancel", timeout=5,
                         headers=auth(CONTROL[dropped]))
    assert resp.status_code == 200, resp.text
    assert ended(site, after)["state"] == "succeeded"
    assert site.job_state(dropped)["state"] == "cancelled" and "heldBy" not in \
        site.job_state(dropped)
    assert ended(site, first)["state"] == "succeeded"


def test_an_external_kind_gives_one_claim_per_account_at_a_time(site: Stack) -> None:
    one = start(site, "ext_per_account", "acme")
    two = start(site, "ext_per_account", "acme")
    other = start(site, "ext_per_account", "beta")
    got = claim(site)
    assert got is not None and got["jobId"] == one
    assert site.job_state(two)["heldBy"]["text"] == HELD_TEXT
    again = claim(site, wait=1)  # acme's second is held: only beta's comes
    assert again is not None and again["jobId"] == other
    assert claim(site, wait=1) is None  # nothing for acme while its first runs
    succeed(site, got)
    then = claim(site, wait=5)
    assert then is not None and then["jobId"] == two
    assert "heldBy" not in site.job_state(two)
    succeed(site, then)
    succeed(site, again)


def test_a_slot_left_by_a_job_that_ended_unseen_is_healed(site: Stack) -> None:
    cfg = Config(environ=site.env, role=WORKER)
    core = lifecycle(cfg)
    lost = start(site, "ext_per_account", "heal")
    held = start(site, "ext_per_account", "heal")
    got = claim(site)
    assert got is not None and got["jobId"] == lost
    core.store.finish(lost, CANCELLED, "ended without its reactions")  # no release ran
    assert site.job_state(held)["state"] == "queued" and claim(site, wait=0.5) is None
    assert core.heal_slots() == 1  # as the tick does now and then
    then = claim(site, wait=5)
    assert then is not None and then["jobId"] == held
    succeed(site, then)
    client = redis.Redis.from_url(site.redis.url, decode_responses=True)
    try:
        assert not client.hexists(keys.CONC_SLOTS, held)  # its end gave its slot back
        assert not client.sismember(keys.CONC_GROUPS, "ext_per_account|heal")
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["per_account", "ext_per_account"])
def test_a_limited_kind_cannot_be_delayed_yet(site: Stack, kind: str) -> None:
    """RQ's scheduler would queue it at its time past the limit: refused, clearly."""
    resp = requests.post(site.url + "/api/jobs", timeout=5, json={
        "kind": kind, "args": {"account": "acme"}, "delaySeconds": 5})
    assert resp.status_code == 400, resp.text
    assert "concurrency limit" in resp.json()["error"]
