"""Unique jobs (#27 section 3): a start whose kind's ``unique`` arguments match a job not
yet ended answers that job (200, ``deduplicated``) and stores nothing; two starts at once
make one job. From every entry point: the API, a batch, the form, the tick; RQ and
external kinds. Who learns the existing job: its readers only."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from shared import keys
from shared.config import WORKER, Config
from shared.protocol import SUCCEEDED, WAITING, new_id
from shared.schedules import ScheduleStore
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import (
    TEST_PROGRESS_TOKEN,
    TEST_SECRET_KEY,
    TEST_WORKER_TOKEN,
    auth,
    csrf_token_in,
    second_web,
    wait_until,
)
from worker.cron import Ticker

FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with the test kinds of tests/flow_kinds.py."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("unique-redis"),
                          JOB_KINDS="tests.flow_kinds", RATE_LIMIT="0")
    yield running
    stop_stack(running)


@pytest.fixture(scope="module")
def private_site(stack: Stack, log_dir: Path) -> Iterator[str]:
    """A second web process on the same Redis with ``JOB_VISIBILITY=owner``."""
    web, url = second_web(stack.env, log_dir, "web-private-unique", JOB_VISIBILITY="owner")
    yield url
    web.stop()


def sync(url: str, account: str, seconds: float = 0, session: Any = requests,
         **more: Any) -> requests.Response:
    return session.post(url + "/api/jobs", timeout=10,  # type: ignore[no-any-return]
                        json={"kind": "flow_sync",
                              "args": {"account": account, "seconds": seconds}, **more})


def ended(stack: Stack, job_id: str) -> dict[str, Any]:
    return wait_until(lambda: (s := stack.job_state(job_id))["state"] in FINAL and s,
                      timeout=30, what=f"job {job_id} to end")


def test_two_starts_at_once_make_one_job(stack: Stack) -> None:
    account = f"acme-{new_id()[:8]}"
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: sync(stack.url, account, 2), range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [202], [a.text for a in answers]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1
    first = next(a.json() for a in answers if a.status_code == 202)
    again = [a.json() for a in answers if a.status_code == 200]
    assert all(body["deduplicated"] is True and body["kind"] == "flow_sync" for body in again)
    assert all(body["status_url"] == first["status_url"] for body in again)
    other = sync(stack.url, f"other-{new_id()[:8]}")
    assert other.status_code == 202 and other.json()["id"] not in ids


def test_the_key_is_free_again_once_the_job_ended(stack: Stack) -> None:
    account = f"done-{new_id()[:8]}"
    first = sync(stack.url, account).json()["id"]
    assert ended(stack, first)["state"] == SUCCEEDED
    client = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    try:  # its end gave the key back (a reaction), not only the next claim
        wait_until(lambda: not client.keys(keys.UNIQUE_PREFIX + "flow_sync:*")
                   or all(client.get(k) != first for k in
                          client.keys(keys.UNIQUE_PREFIX + "flow_sync:*")), timeout=5)
    finally:
        client.close()
    second = sync(stack.url, account)
    assert second.status_code == 202 and second.json()["id"] != first


def test_only_the_named_arguments_make_the_key(stack: Stack) -> None:
    account = f"note-{new_id()[:8]}"
    first = sync(stack.url, account, 2, note="a")
    again = sync(stack.url, account, 2, note="b")  # another note, same account: the same job
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]


def test_the_control_token_goes_to_the_owner_only(stack: Stack) -> None:
    alice, bob = requests.Session(), requests.Session()
    account = f"tok-{new_id()[:8]}"
    created = sync(stack.url, account, 2, alice).json()
    mine = sync(stack.url, account, 2, alice).json()
    assert mine["deduplicated"] and mine["controlToken"] and mine["owner"] == created["owner"]
    theirs = sync(stack.url, account, 2, bob)
    assert theirs.status_code == 200 and theirs.json()["id"] == created["id"]
    assert "controlToken" not in theirs.json() and "owner" not in theirs.json()
    refused = requests.post(f"{stack.url}/api/jobs/{created['id']}/cancel", timeout=5,
                            cookies=bob.cookies)
    assert refused.status_code == 403


def test_with_private_jobs_others_learn_no_id(stack: Stack, private_site: str) -> None:
    """JOB_VISIBILITY=owner: a start matching someone else's job gets 409 without its id."""
    alice, mallory = requests.Session(), requests.Session()
    account = f"priv-{new_id()[:8]}"
    created = sync(private_site, account, 2, alice).json()
    refused = sync(private_site, account, 2, mallory)
    assert refused.status_code == 409, refused.text
    assert created["id"] not in refused.text and "may not read" in refused.json()["error"]
    assert sync(private_site, account, 2, alice).json()["id"] == created["id"]
    batch = mallory.post(private_site + "/api/batches", timeout=10, json={
        "kind": "flow_sync", "items": [{"account": account}]})
    assert batch.status_code == 200 and batch.json() == {
        "batchId": None, "total": 0, "deduplicated": [{"index": 0}]}


def test_a_waiting_job_holds_its_key(stack: Stack) -> None:
    gate = requests.post(stack.url + "/api/jobs", timeout=10,
                         json={"kind": "external", "args": {"gate": new_id()}}).json()["id"]
    account = f"wait-{new_id()[:8]}"
    waiting = sync(stack.url, account, after=[gate])
    assert waiting.status_code == 202 and waiting.json()["state"]["state"] == WAITING
    again = sync(stack.url, account)
    assert again.status_code == 200 and again.json()["state"]["state"] == WAITING
    assert again.json()["id"] == waiting.json()["id"]


def test_a_batch_keeps_the_first_of_each_key(stack: Stack) -> None:
    run_account = f"run-{new_id()[:8]}"
    running = sync(stack.url, run_account, 3).json()
    account = f"batch-{new_id()[:8]}"
    resp = requests.post(stack.url + "/api/batches", timeout=10, json={
        "kind": "flow_sync", "items": [
            {"account": account}, {"account": account, "note": "twice"},
            {"account": f"{account}-b"}, {"account": run_account}]})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["total"] == 2
    batch = requests.get(stack.url + body["statusUrl"], timeout=5).json()
    assert batch["total"] == 2
    dedup = body["deduplicated"]
    assert [d["index"] for d in dedup] == [1, 3]
    assert dedup[1]["id"] == running["id"]
    first_item = sync(stack.url, account)
    assert first_item.status_code == 200 and dedup[0]["id"] == first_item.json()["id"]


def test_the_form_shows_the_job_it_found(stack: Stack) -> None:
    browser = requests.Session()
    home = browser.get(stack.url + "/", timeout=5)
    account = f"form-{new_id()[:8]}"
    form = {"csrf_token": csrf_token_in(home.text), "kind": "flow_sync", "account": account,
            "seconds": "2"}
    first = browser.post(stack.url + "/jobs", data=form, timeout=10, allow_redirects=False)
    again = browser.post(stack.url + "/jobs", data=form, timeout=10, allow_redirects=False)
    assert first.status_code == again.status_code == 303
    assert again.headers["Location"] == first.headers["Location"]


def test_the_tick_starts_no_second_job(stack: Stack) -> None:
    cfg = Config(environ={}, role=WORKER, SECRET_KEY=TEST_SECRET_KEY,
                 PROGRESS_TOKEN=TEST_PROGRESS_TOKEN, REDIS_URL=stack.env["REDIS_URL"],
                 JOB_KINDS=("tests.flow_kinds",), SITE_URL=stack.url)
    ticker = Ticker(cfg)
    client = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    try:
        account = f"tick-{new_id()[:8]}"
        schedule = ScheduleStore(client).create("* * * * *", "flow_sync",
                                                {"account": account, "seconds": 3})
        first, second = ticker.fire(schedule), ticker.fire(schedule)
        assert first == second
        assert sync(stack.url, account).json()["id"] == first
    finally:
        client.close()


def test_an_external_kind_is_unique_until_its_worker_reports_the_end(stack: Stack) -> None:
    account = f"ext-{new_id()[:8]}"
    body = {"kind": "flow_ext", "args": {"account": account}}
    first = requests.post(stack.url + "/api/jobs", json=body, timeout=10)
    again = requests.post(stack.url + "/api/jobs", json=body, timeout=10)
    assert first.status_code == 202 and again.status_code == 200
    job = first.json()["id"]
    got = wait_until(lambda: (r := requests.post(
        stack.url + "/api/workers/claim", headers=auth(TEST_WORKER_TOKEN), timeout=10,
        json={"kinds": ["flow_ext"], "worker": "t"})).status_code == 200 and r.json(),
        timeout=10, what="the claim")
    assert got["jobId"] == job
    assert requests.post(stack.url + "/api/jobs", json=body, timeout=10).json()["id"] == job
    done = requests.post(stack.url + "/api/progress", headers=auth(got["token"]), timeout=10,
                         json={"jobId": job, "state": "succeeded"})
    assert done.status_code == 204
    after = requests.post(stack.url + "/api/jobs", json=body, timeout=10)
    assert after.status_code == 202 and after.json()["id"] != job
