"""Batches on the real stack: totals kept with every child, batchProgress throttled,
late joiners, cancel cascades, onComplete exactly once, and bad input."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from shared import keys
from tests.conftest import Stack
from tests.support import (
    TEST_OPS_TOKEN,
    EventRecorder,
    RedisServer,
    auth,
    free_port,
    stack_env,
    start_web,
    start_worker,
    wait_until,
)


def totals(stack: Stack, batch_id: str) -> dict[str, Any]:
    resp = requests.get(f"{stack.url}/api/batches/{batch_id}", timeout=5)
    assert resp.status_code == 200
    return resp.json()  # type: ignore[no-any-return]


def test_a_batch_runs_counts_pushes_and_completes_once(stack: Stack) -> None:
    resp = requests.post(f"{stack.url}/api/batches", timeout=30, json={
        "kind": "demo", "items": [{"steps": 1}] * 120,
        "onComplete": {"kind": "demo", "args": {"steps": 2}}})
    assert resp.status_code == 202, resp.text
    batch_id = resp.json()["batchId"]
    assert resp.json()["statusUrl"] == f"/api/batches/{batch_id}"
    rec = EventRecorder(stack.url)
    arrived: list[float] = []

    def on_progress(data: Any) -> None:
        arrived.append(time.monotonic())
        rec._record("batchProgress", data)

    rec.client.on("batchProgress", on_progress)
    try:
        assert rec.client.call("subscribe", {"batchId": batch_id}, timeout=10)["ok"] is True
        rec.wait_for(lambda ev: any(n == "batchProgress" and d["complete"] for n, d in ev),
                     timeout=90, what="the batch to complete")
    finally:
        rec.close()
    final = totals(stack, batch_id)
    assert final["done"] == final["total"] == 120 and final["counts"]["succeeded"] == 120
    assert sum(final["counts"].values()) == 120 and final["complete"] is True
    pushed = rec.payloads("batchProgress")
    assert pushed[0]["batchId"] == batch_id  # the totals at once, on subscribe
    # At most 10 a second (120 children changed 240 times): besides the subscribe's
    # answer and the completing change, one push per 100 ms window at most.
    span = arrived[-1] - arrived[1]
    assert 2 <= len(arrived) - 2 <= span * 10 + 2, (len(arrived), span)
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    # The completing change is pushed first; its reactions then start onComplete.
    done_job = wait_until(lambda: totals(stack, batch_id)["completeJob"], timeout=10,
                          what="onComplete to start")
    assert client.hget(keys.job_key(done_job), "owner") == f"batch:{batch_id}"
    owned = client.zcard(keys.owner_index(f"batch:{batch_id}"))
    assert owned == 1  # onComplete started exactly once
    late = EventRecorder(stack.url)
    try:
        late.client.call("subscribe", {"batchId": batch_id}, timeout=10)
        first = late.wait_for(lambda ev: any(n == "batchProgress" for n, _ in ev), timeout=10)
        assert [d for n, d in first if n == "batchProgress"][0]["done"] == 120  # a late joiner
    finally:
        late.close()
    page = requests.get(f"{stack.url}/batches/{batch_id}", timeout=5)
    assert page.status_code == 200 and '<span id="batch-done">120</span> of 120 finished' in page.text


def test_cancelling_a_batch_cascades(stack: Stack) -> None:
    resp = requests.post(f"{stack.url}/api/batches", timeout=30,
                         json={"kind": "demo", "items": [{"steps": 4}] * 150,
                               "onComplete": {"kind": "demo", "args": {"steps": 1}}})
    batch_id, token = resp.json()["batchId"], resp.json()["controlToken"]
    cancel = requests.post(f"{stack.url}/api/batches/{batch_id}/cancel", timeout=5,
                           headers=auth(token))
    assert cancel.status_code == 202
    wait_until(lambda: totals(stack, batch_id)["complete"], timeout=120,
               what="every child to end")
    final = totals(stack, batch_id)
    assert final["counts"]["cancelled"] > 100 and final["done"] == 150
    assert final["counts"]["queued"] == final["counts"]["running"] == 0
    bulk_id = cancel.json()["bulkJobId"]
    wait_until(lambda: stack.job_state(bulk_id)["state"] == "succeeded", timeout=30,
               what="the bulk cancel to finish")  # it reports after its last cancel
    assert stack.job_state(bulk_id)["result"]["action"] == "cancel"
    # The change that ended the last child (a cancel, in the worker's bulk job, or a
    # child that finished first, through the site) started onComplete, once.
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    wait_until(lambda: totals(stack, batch_id)["completeJob"], timeout=10,
               what="onComplete to start")
    assert client.zcard(keys.owner_index(f"batch:{batch_id}")) == 2  # the bulk job and onComplete
    done_job = totals(stack, batch_id)["completeJob"]
    wait_until(lambda: stack.job_state(done_job)["state"] == "succeeded", timeout=30,
               what="onComplete to run")


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "demo", "items": []}, "items"),
    ({"kind": "demo", "items": [{}] * 10_001}, "items"),
    ({"kind": "demo", "items": [{}, {}, {"steps": 0}]}, "items[2].steps"),
    ({"kind": "demo", "items": [{}, 5]}, "items[1]"),
    ({"kind": "nope", "items": [{}]}, "kind"),
    ({"kind": "bulk", "items": [{"action": "retry"}]}, "kind"),
    ({"kind": "csv_import", "items": [{}]}, "kind"),
    ({"kind": "demo", "items": [{}], "onComplete": {"kind": "nope"}}, "onComplete.kind"),
])
def test_bad_batches_are_400(stack: Stack, body: dict[str, Any], field: str) -> None:
    resp = requests.post(f"{stack.url}/api/batches", json=body, timeout=10)
    assert resp.status_code == 400 and field in resp.json()["fields"], resp.text


def test_unknown_batches_are_404(stack: Stack) -> None:
    for method, path in (("get", "/api/batches/x"), ("post", "/api/batches/x/cancel"),
                         ("get", "/batches/x"),
                         ("get", "/api/batches/00000000-0000-4000-8000-000000000000")):
        assert getattr(requests, method)(stack.url + path, timeout=5).status_code == 404
    rec = EventRecorder(stack.url)
    try:
        ack = rec.client.call("subscribe", {"batchId": "00000000-0000-4000-8000-000000000000"},
                              timeout=10)
        assert ack["ok"] is False and "unknown batch" in ack["error"]
    finally:
        rec.close()


def _batch(url: str, session: requests.Session | None = None) -> dict[str, Any]:
    """Start a small batch (as ``session``, or without cookies); its 202 answer."""
    post = (session or requests).post
    resp = post(f"{url}/api/batches", timeout=30,
                json={"kind": "demo", "items": [{"steps": 30}] * 3})
    assert resp.status_code == 202, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_only_the_owner_or_an_operator_cancels_a_batch(stack: Stack) -> None:
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    browser = requests.Session()
    mine, other = _batch(stack.url, browser), _batch(stack.url)
    job = requests.post(f"{stack.url}/api/jobs", json={"kind": "demo", "args": {"steps": 30}},
                        timeout=10).json()
    url = f"{stack.url}/api/batches/{mine['batchId']}/cancel"
    refused = [{}, auth("not-a-token"), auth(other["controlToken"]), auth(job["controlToken"]),
               auth(mine["controlToken"] + "x"), {"Authorization": mine["controlToken"]}]
    for headers in refused:
        resp = requests.post(url, headers=headers, timeout=5)
        assert resp.status_code == 403 and "owner" in resp.json()["error"], (headers, resp.text)
    # Another session (its own owner id) is refused too.
    stranger = requests.Session()
    _batch(stack.url, stranger)
    assert stranger.post(url, timeout=5).status_code == 403
    # Nothing changed: no bulk cancel started, the children are untouched.
    assert client.zcard(keys.owner_index(f"batch:{mine['batchId']}")) == 0
    assert totals(stack, mine["batchId"])["counts"]["cancelled"] == 0
    # The children carry the creating session's owner id.
    children = client.zrange(keys.batch_index(mine["batchId"]), 0, -1)
    assert {client.hget(keys.job_key(c), "owner") for c in children} == {mine["owner"]}
    assert mine["owner"].startswith("u-") and mine["owner"] != other["owner"]
    # Allowed: the creating session, the batch's controlToken, an operator.
    assert browser.post(url, timeout=5).status_code == 202
    assert requests.post(f"{stack.url}/api/batches/{other['batchId']}/cancel", timeout=5,
                         headers=auth(other["controlToken"])).status_code == 202
    third = _batch(stack.url)
    assert requests.post(f"{stack.url}/api/batches/{third['batchId']}/cancel", timeout=5,
                         headers=auth(TEST_OPS_TOKEN)).status_code == 202
    for done in (mine, other, third):
        assert client.zcard(keys.owner_index(f"batch:{done['batchId']}")) == 1  # its bulk cancel
        wait_until(lambda b=done["batchId"]: totals(stack, b)["complete"], timeout=60,
                   what="the cancelled batch to end")


@contextmanager
def batch_the_site_never_sees(
        log_dir: Path, redis_dir: Path, name: str, count: int, steps: int,
        message_queue: bool, worker: Callable[[str, dict[str, str]], dict[str, str]],
        ended: Callable[[dict[str, Any]], bool],
) -> Iterator[tuple[list[dict[str, Any]], redis.Redis, str]]:
    """A batch of ``count`` demo jobs (with an ``onComplete``) whose children's changes
    never reach the site's callback: a page subscribed to it records ``batchProgress``
    until ``ended`` holds for one. Yields the pushed totals, a Redis client and the
    batch id; the web process (on the Socket.IO message queue if ``message_queue``) and
    the worker (``worker(url, env)`` its settings) run meanwhile."""
    server = RedisServer(log_dir, redis_dir).start()
    queue = {"SOCKETIO_MESSAGE_QUEUE": server.url} if message_queue else {}
    env = stack_env(server.url, free_port(), DEMO_STEP_DELAY="0.01", **queue)
    procs = [server]
    try:
        procs.append(start_web(env, log_dir, name=f"web-{name}"))
        url = env["SITE_URL"]
        resp = requests.post(f"{url}/api/batches", timeout=30, json={
            "kind": "demo", "items": [{"steps": steps}] * count,
            "onComplete": {"kind": "demo", "args": {"steps": 1}}})
        assert resp.status_code == 202, resp.text
        batch_id = resp.json()["batchId"]
        rec = EventRecorder(url)
        try:
            assert rec.client.call("subscribe", {"batchId": batch_id}, timeout=10)["ok"]
            procs.append(start_worker(worker(url, env), log_dir, name=f"worker-{name}"))
            rec.wait_for(lambda ev: any(n == "batchProgress" and ended(d) for n, d in ev),
                         timeout=90, what=f"the final totals ({name})")
        finally:
            rec.close()
        yield rec.payloads("batchProgress"), redis.Redis.from_url(
            server.url, decode_responses=True), batch_id
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_a_direct_worker_pushes_totals_and_starts_on_complete(
        log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    # WORKER_EMIT=direct: the site never sees a child's change (the callback URL is a
    # 404), so the pushes and onComplete come from the worker's own path.
    def direct(url: str, env: dict[str, str]) -> dict[str, str]:
        return dict(env, WORKER_EMIT="direct", WORKER_CLASS="simple",
                    PROGRESS_URL=url + "/api/no-such-callback")

    with batch_the_site_never_sees(
            log_dir, tmp_path_factory.mktemp("direct-redis"), "direct", 40, 3,
            True, direct, lambda d: d["complete"],
    ) as (pushed, client, batch_id):
        assert len(pushed) >= 3  # the subscribe's answer, some while running, the end
        assert any(0 < p["done"] < 40 for p in pushed)
        assert pushed[-1]["done"] == 40 and pushed[-1]["counts"]["succeeded"] == 40
        done_job = wait_until(lambda: client.hget(keys.batch_key(batch_id), "complete_job"),
                              timeout=10, what="onComplete to start")
        assert client.zcard(keys.owner_index(f"batch:{batch_id}")) == 1  # once
        wait_until(lambda: client.hget(keys.job_key(done_job), "state") == "succeeded",
                   timeout=30, what="onComplete to run")


def test_without_a_message_queue_the_relay_pushes_totals_the_fallback_stored(
        log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    # No message queue and the site's callback unreachable: every child's change is
    # stored by the worker's fallback and reaches the page through the site's relay,
    # which now pushes the batch's totals too (the final ones always).
    def unreachable(url: str, env: dict[str, str]) -> dict[str, str]:
        dead = f"http://127.0.0.1:{free_port()}/api/progress"
        return dict(env, WORKER_CLASS="simple", PROGRESS_URL=dead, REPORT_RETRY_SECONDS="0.2")

    with batch_the_site_never_sees(
            log_dir, tmp_path_factory.mktemp("relay-redis"), "relay", 12, 2, False, unreachable,
            lambda d: d["done"] == 12,
    ) as (pushed, client, batch_id):
        assert pushed[-1]["done"] == 12 and pushed[-1]["counts"]["succeeded"] == 12
        assert len(pushed) >= 2  # the subscribe's answer, then the relay's
        wait_until(lambda: client.hget(keys.batch_key(batch_id), "complete_job"),
                   timeout=10, what="onComplete to start")
        assert client.zcard(keys.owner_index(f"batch:{batch_id}")) == 1  # once
