"""Scheduled jobs: runAt / delaySeconds, state ``scheduled`` until then, cancellable (real stack)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import redis
import requests
from rq.registry import ScheduledJobRegistry

from shared import keys
from shared.protocol import iso_time
from shared.store import JobStore
from tests.conftest import Stack
from tests.support import TEST_WORKER_TOKEN, state_on_connect, wait_until
from website.jobs.submit import read_run_at


def submit(stack: Stack, **extra: object) -> requests.Response:
    return requests.post(f"{stack.url}/api/jobs", json={"args": {"steps": 1}, **extra}, timeout=5)


def scheduled_ids(stack: Stack) -> set[str]:
    """The ids in the ``scheduled`` state index."""
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    return set(client.zrange(keys.state_index("scheduled"), 0, -1))  # type: ignore[arg-type]


def stored(stack: Stack, job_id: str) -> dict[str, str]:
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    state = JobStore(client).get(job_id)
    assert state is not None
    return {"state": state.state, **state.extra}


def test_a_scheduled_job_waits_for_its_time(stack: Stack) -> None:
    resp = submit(stack, delaySeconds=3)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    assert resp.json()["state"]["state"] == "scheduled"
    run_at = resp.json()["state"]["runAt"]  # when it will run, as ISO 8601 UTC
    assert stack.job_state(job_id)["state"] == "scheduled"
    assert stack.job_state(job_id)["runAt"] == run_at
    kind, pushed = state_on_connect(stack.url, job_id)  # the page's updateProgress says it too
    assert kind == "updateProgress" and pushed["runAt"] == run_at
    page = requests.get(f"{stack.url}/jobs/{job_id}", timeout=5).text
    assert "Scheduled to run at" in page
    assert job_id in scheduled_ids(stack)
    # RQ's scheduler keeps whole seconds: the stored time is the one it will honour
    registry = ScheduledJobRegistry("jobcast", connection=redis.Redis.from_url(stack.redis.url))
    assert registry.get_scheduled_time(job_id).timestamp() == float(stored(stack, job_id)["run_at"])
    wait_until(lambda: stack.job_state(job_id)["state"] == "succeeded", timeout=30,
               what="the scheduled job to run")
    fields = stored(stack, job_id)
    assert float(fields["started_at"]) >= float(fields["run_at"])  # not a moment before
    assert iso_time(float(fields["run_at"])) == run_at
    assert "runAt" not in stack.job_state(job_id)  # only while it waits


def test_a_scheduled_external_job_is_claimable_once_due(stack: Stack) -> None:
    resp = requests.post(f"{stack.url}/api/jobs", timeout=5,
                         json={"kind": "external", "args": {}, "delaySeconds": 1})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    assert stack.job_state(job_id)["state"] == "scheduled"
    wait_until(lambda: stack.job_state(job_id)["state"] == "queued", timeout=30,
               what="the external job to be due")
    claim = requests.post(f"{stack.url}/api/workers/claim", timeout=15,
                          headers={"Authorization": f"Bearer {TEST_WORKER_TOKEN}"},
                          json={"kinds": ["external"], "worker": "due-test", "wait": 5})
    assert claim.status_code == 200 and claim.json()["jobId"] == job_id, claim.text


def test_times_round_up_to_the_whole_second_rq_keeps() -> None:
    now = datetime(2030, 1, 1, 9, 0, 0, 983_472, tzinfo=UTC)
    # RQ scores a scheduled job by whole seconds: x.98 would run at x, 0.98 s early
    assert read_run_at({"delaySeconds": 3}, 3600, now) == datetime(2030, 1, 1, 9, 0, 4, tzinfo=UTC)
    assert read_run_at({"runAt": "2030-01-01T10:00:01.25+01:00"}, 3600, now) == \
        datetime(2030, 1, 1, 9, 0, 2, tzinfo=UTC)
    assert read_run_at({"runAt": "2030-01-01T09:30:00Z"}, 3600, now) == \
        datetime(2030, 1, 1, 9, 30, 0, tzinfo=UTC)  # a whole second stays as it is
    assert read_run_at({}, 3600, now) is None


def test_run_at_with_a_zone_and_cancel_before_it_runs(stack: Stack) -> None:
    when = (datetime.now(UTC) + timedelta(minutes=10)).astimezone().isoformat()
    created = submit(stack, runAt=when).json()
    job_id = created["id"]
    registry = ScheduledJobRegistry("jobcast", connection=redis.Redis.from_url(stack.redis.url))
    assert job_id in registry.get_job_ids()
    resp = requests.post(f"{stack.url}/api/jobs/{job_id}/cancel", timeout=5,
                         headers={"Authorization": f"Bearer {created['controlToken']}"})
    assert resp.status_code == 200 and resp.json()["state"]["state"] == "cancelled"
    assert job_id not in registry.get_job_ids()
    assert stack.job_state(job_id)["state"] == "cancelled"


def test_the_owner_sees_cancel_on_a_scheduled_jobs_page_without_scripts(stack: Stack) -> None:
    session = requests.Session()  # keeps the cookie: the owner session
    job_id = session.post(f"{stack.url}/api/jobs", json={"args": {"steps": 1}, "delaySeconds": 600},
                          timeout=5).json()["id"]
    page = session.get(f"{stack.url}/jobs/{job_id}", timeout=5).text
    forms = dict(re.findall(r'<form id="(cancel|retry)-form"([^>]*)>', page))
    assert " hidden" not in forms["cancel"] and " hidden" in forms["retry"]


@pytest.mark.parametrize(("extra", "field"), [
    ({"runAt": "2001-01-01T00:00:00Z"}, "runAt"),
    ({"runAt": "2099-01-01T00:00:00"}, "runAt"),
    ({"runAt": "tomorrow"}, "runAt"),
    ({"runAt": 5}, "runAt"),
    ({"runAt": "2999-01-01T00:00:00+00:00"}, "runAt"),
    ({"delaySeconds": 0}, "delaySeconds"),
    ({"delaySeconds": "5"}, "delaySeconds"),
    ({"delaySeconds": 10**9}, "delaySeconds"),
    ({"delaySeconds": 5, "runAt": "2099-01-01T00:00:00Z"}, "runAt"),
])
def test_bad_times_are_400_naming_the_field(stack: Stack, extra: dict[str, object],
                                            field: str) -> None:
    before = scheduled_ids(stack)
    resp = submit(stack, **extra)
    assert resp.status_code == 400 and field in resp.json()["fields"], resp.text
    after = scheduled_ids(stack)
    assert after == before  # nothing stored
