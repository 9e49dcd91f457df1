"""Every time the JSON API returns is an ISO 8601 UTC string with a ``Z`` (in process,
on a real Redis): a scheduled job's ``runAt``, the operators' job rows, log lines,
schedules' ``nextRun``, a webhook's ``finishedAt`` and snippets' ``createdAt`` alike."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from shared.protocol import iso_time
from shared.store import JobState
from shared.webhooks import payload
from tests.support import TEST_OPS_TOKEN, auth
from website.http.timefmt import iso_text

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
OPS = auth(TEST_OPS_TOKEN)  # the app fixture's operators' token


def when(text: Any) -> float:
    """An API time as epoch seconds; fails unless it is ISO 8601 UTC to the ms with a Z."""
    assert isinstance(text, str) and ISO_UTC.fullmatch(text), text
    return datetime.fromisoformat(text).timestamp()


def test_iso_time_is_utc_with_a_z_and_the_pages_use_it_to_the_second() -> None:
    assert iso_time(1_700_000_000.25) == "2023-11-14T22:13:20.250Z"
    assert iso_text("1700000000.25") == "2023-11-14T22:13:20Z"
    assert iso_text(None) == "–"


def test_a_scheduled_jobs_state_says_when_it_runs(app: Flask) -> None:
    client = app.test_client()
    created = client.post("/api/jobs", json={"args": {"steps": 1}, "delaySeconds": 600})
    assert created.status_code == 202, created.get_data(as_text=True)
    body = created.get_json()
    run_at = when(body["state"]["runAt"])
    assert 598 <= run_at - datetime.now(UTC).timestamp() <= 601 and run_at == int(run_at)
    state = client.get(f"/api/jobs/{body['id']}").get_json()
    assert state["state"] == "scheduled" and state["runAt"] == body["state"]["runAt"]
    now = client.post("/api/jobs", json={"args": {"steps": 1}}).get_json()
    assert "runAt" not in now["state"]
    assert "runAt" not in client.get(f"/api/jobs/{now['id']}").get_json()


def test_run_at_is_only_in_a_scheduled_jobs_payload() -> None:
    stored = {"run_at": "1700000000.0"}
    scheduled = JobState("j", state="scheduled", extra=stored).to_payload()
    assert scheduled["runAt"] == "2023-11-14T22:13:20.000Z"
    assert "runAt" not in JobState("j", state="running", extra=stored).to_payload()


def test_the_operators_rows_and_the_log_give_iso_times(app: Flask) -> None:
    client = app.test_client()
    job_id = client.post("/api/jobs", json={"args": {"steps": 2}}).get_json()["id"]
    row = client.get("/api/jobs", headers=OPS).get_json()["jobs"][0]
    assert row["jobId"] == job_id and row["startedAt"] is None and row["finishedAt"] is None
    created = when(row["createdAt"])
    for body in ({"jobId": job_id, "state": "running", "current": 1, "total": 2,
                  "log": ["first"]},
                 {"jobId": job_id, "state": "succeeded", "result": {"ok": True}}):
        assert client.post("/api/progress", json=body, headers=auth()).status_code == 204
    row = client.get("/api/jobs", headers=OPS).get_json()["jobs"][0]
    assert created == when(row["createdAt"]) <= when(row["startedAt"]) <= when(row["finishedAt"])
    lines = client.get(f"/api/jobs/{job_id}/log").get_json()["lines"]
    assert [line["text"] for line in lines] == ["first"]
    assert when(lines[0]["at"]) == int(lines[0]["id"].split("-")[0]) / 1000


def test_schedules_give_their_next_run_as_iso_time(app: Flask) -> None:
    client = app.test_client()
    made = client.post("/api/schedules", json={"cron": "0 0 1 1 *", "kind": "demo"}, headers=OPS)
    assert made.status_code == 201, made.get_data(as_text=True)
    schedule = made.get_json()
    next_run = datetime.fromtimestamp(when(schedule["nextRun"]), UTC)
    assert (next_run.month, next_run.day, next_run.hour, next_run.minute) == (1, 1, 0, 0)
    listed = client.get("/api/schedules", headers=OPS).get_json()["schedules"]
    assert [s["nextRun"] for s in listed] == [schedule["nextRun"]]
    paused = client.post(f"/api/schedules/{schedule['id']}/pause", headers=OPS).get_json()
    assert paused["nextRun"] is None


def test_a_webhooks_finished_at_is_iso_time() -> None:
    ended = JobState("j", state="succeeded", updated_at=5.0, extra={"finished_at": "1700000000.5"})
    assert payload(ended)["finishedAt"] == "2023-11-14T22:13:20.500Z"


def test_a_snippets_times_are_iso_time(client: FlaskClient) -> None:
    made = client.post("/api/snippets", json={"source": "print(1)", "language": "python"})
    assert made.status_code == 202, made.get_data(as_text=True)
    snippet = client.get(made.get_json()["statusUrl"]).get_json()
    when(snippet["createdAt"])
    assert snippet["highlightedAt"] is None
