"""The operators' job page: kind, args, owner, attempts, timeline, log, result and
the traceback, which no public page or JSON shows (real stack)."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from rq import Queue, Worker

from shared.protocol import new_id
from shared.rqconf import SERIALIZER
from shared.store import JobStore
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import auth, wait_until

OPS_TOKEN = "detail-ops-token"
OPS = auth(OPS_TOKEN)


@pytest.fixture(scope="module")
def ops_site(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(log_dir, tmp_path_factory.mktemp("detail-redis"), OPS_TOKEN=OPS_TOKEN)
    yield running
    stop_stack(running)


def detail(site: Stack, job_id: str) -> str:
    resp = requests.get(f"{site.url}/dashboard/jobs/{job_id}", headers=OPS, timeout=5)
    assert resp.status_code == 200
    return html.unescape(resp.text)


def run_failing(site: Stack, job_id: str) -> None:
    Queue("jobcast", connection=redis.Redis.from_url(site.redis.url), serializer=SERIALIZER).enqueue(
        "tests.jobs.failing_job", job_id, job_id=job_id)
    wait_until(lambda: site.job_state(job_id)["state"] == "failed", timeout=30,
               what="the job to fail")


def test_a_failure_shows_its_traceback_to_operators_only(ops_site: Stack) -> None:
    client = redis.Redis.from_url(ops_site.redis.url, decode_responses=True)
    job_id = new_id()
    JobStore(client).create(job_id, "test", "owner-7", args='{"n": 3}')
    run_failing(ops_site, job_id)
    page = detail(ops_site, job_id)
    assert "Traceback (most recent call last)" in page and 'raise ValueError("disk on fire")' in page
    assert re.search(r'id="detail-owner">owner-7<', page) and 'id="detail-kind">test<' in page
    assert '"n": 3' in page
    workers = {w.name for w in Worker.all(connection=redis.Redis.from_url(ops_site.redis.url),
                                          serializer=SERIALIZER)}
    shown = re.findall(r'class="worker">([^<]+)<', page)
    assert len(shown) == 1 and shown[0] in workers
    assert re.findall(r"</time> (\w+)</li>", page) == ["queued", "running", "failed"]
    # The public page and JSON: the message, never the traceback.
    public = requests.get(f"{ops_site.url}/jobs/{job_id}", timeout=5).text
    state = requests.get(f"{ops_site.url}/api/jobs/{job_id}", timeout=5).text
    log = requests.get(f"{ops_site.url}/api/jobs/{job_id}/log", timeout=5).text
    for text in (public, state, log):
        assert "Traceback" not in text and "tests/jobs.py" not in text
    assert "ValueError: disk on fire" in html.unescape(public)
    # A retry is a second attempt, on the same timeline.
    assert requests.post(f"{ops_site.url}/api/jobs/{job_id}/retry", headers=OPS,
                         timeout=5).status_code == 202
    wait_until(lambda: len(re.findall(r'class="worker">', detail(ops_site, job_id))) == 2
               and ops_site.job_state(job_id)["state"] == "failed", timeout=30,
               what="the second attempt to fail")
    page = detail(ops_site, job_id)
    assert re.findall(r"</time> (\w+)</li>", page) == ["queued", "running", "failed"] * 2
    assert page.count(">failed</td>") == 2


def test_a_demo_job_shows_args_log_and_result(ops_site: Stack) -> None:
    job_id = requests.post(f"{ops_site.url}/api/jobs", json={"args": {"steps": 3}},
                           timeout=5).json()["id"]
    wait_until(lambda: ops_site.job_state(job_id)["state"] == "succeeded", timeout=30,
               what="the demo to finish")
    def with_outcome() -> str | None:  # the RQ worker writes it after the job's last report
        page = detail(ops_site, job_id)
        return page if ">succeeded</td>" in page else None

    page = wait_until(with_outcome, timeout=10, interval=0.2, what="the attempt's outcome")
    assert '"steps": 3' in page and "step 3 of 3 done" in page
    assert 'id="detail-result"' in page and "Traceback" not in page


def test_only_operators_see_the_job_page(ops_site: Stack) -> None:
    job_id = new_id()
    for headers in ({}, auth("wrong")):
        resp = requests.get(f"{ops_site.url}/dashboard/jobs/{job_id}", headers=headers, timeout=5)
        assert resp.status_code == 401
    assert requests.get(f"{ops_site.url}/dashboard/jobs/{job_id}", headers=OPS,
                        timeout=5).status_code == 404
    assert requests.get(f"{ops_site.url}/dashboard/jobs/not-a-uuid", headers=OPS,
                        timeout=5).status_code == 404
