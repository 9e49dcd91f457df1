"""Operations, in process on a real Redis: store reset, control API, health, metrics,
dashboard page, request log. The live parts (worker, Socket.IO) are in
test_ops_stack.py."""

from __future__ import annotations

import base64
import logging
import re

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue
from rq.job import Job, JobStatus

from shared import keys
from shared.config import Config
from shared.protocol import (
    FAILED,
    RETRYABLE_STATES,
    RUN_KIND_JOB,
    RUNNING,
    SUCCEEDED,
    ProgressUpdate,
    new_id,
)
from shared.rqconf import SERIALIZER
from shared.store import InvalidTransition, JobStore, StaleAttempt, UnknownJob
from tests.support import TEST_PROGRESS_TOKEN, TEST_SECRET_KEY, auth, csrf_token_in, free_port
from website import create_app
from website.http.timefmt import eta_seconds, format_duration


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client)


OPS = "test-ops-token"


def ops_auth() -> dict[str, str]:
    """The operator's Authorization header (OPS_TOKEN of make_app's apps)."""
    return {"Authorization": f"Bearer {OPS}"}


def owner_auth(created: dict[str, object]) -> dict[str, str]:
    """The Authorization header with a 202 body's controlToken."""
    return {"Authorization": f"Bearer {created['controlToken']}"}


def make_app(config: Config, **overrides: object) -> Flask:
    overrides.setdefault("OPS_TOKEN", OPS)
    for key, value in overrides.items():
        setattr(config, key, value)
    app = create_app(config)
    app.config["TESTING"] = True
    return app


def metric(text: str, name: str) -> float:
    """The value of one sample line of a Prometheus exposition."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in metrics:\n{text}"
    return float(match.group(1))


# --- store -----------------------------------------------------------------

def test_reset_puts_a_failed_job_back_to_queued_and_counts_the_attempt(store: JobStore) -> None:
    job_id = new_id()
    store.create(job_id, kind="demo")
    store.apply(ProgressUpdate(job_id, 30, RUNNING, "step", stage="s", seq=5))
    store.apply(ProgressUpdate(job_id, 30, FAILED, "boom", seq=6))
    state = store.reset(job_id, RETRYABLE_STATES)
    assert (state.state, state.progress, state.message, state.stage) == ("queued", 0, "", "")
    assert state.attempt == 2 and state.started_at is None and state.finished_at is None
    # a late report of the first attempt is refused by its attempt ...
    with pytest.raises(StaleAttempt):
        store.apply(ProgressUpdate(job_id, 50, RUNNING, "late", seq=7), attempt=1)
    # ... and the seq belongs to the attempt: the new one starts again from 1.
    assert store.apply(ProgressUpdate(job_id, 10, RUNNING, "again", seq=1),
                       attempt=2).state is not None


def test_reset_refuses_a_running_job_and_an_unknown_one(store: JobStore) -> None:
    job_id = new_id()
    store.create(job_id)
    store.apply(ProgressUpdate(job_id, 30, RUNNING))
    with pytest.raises(InvalidTransition) as info:
        store.reset(job_id, RETRYABLE_STATES)
    assert info.value.state == RUNNING
    assert store.get(job_id).progress == 30  # type: ignore[union-attr]
    with pytest.raises(UnknownJob):
        store.reset(new_id(), RETRYABLE_STATES)


def test_recent_pages_newest_first_and_skips_expired(store: JobStore,
                                                     redis_client: redis.Redis) -> None:
    ids = [new_id() for _ in range(5)]
    for job_id in ids:
        store.create(job_id)
    redis_client.delete(keys.job_key(ids[2]))  # expired
    newest = list(reversed(ids))
    assert [j.job_id for j in store.recent(0, 2)] == newest[:2]
    assert [j.job_id for j in store.recent(2, 2)] == [newest[3]]  # ids[2] skipped
    assert store.recent_count() == 5
    assert store.state_counts(10) == {"queued": 4}


def test_eta_and_durations() -> None:
    assert eta_seconds(100.0, 40, 108.0) == pytest.approx(12.0)
    assert eta_seconds(None, 40, 108.0) is None
    assert eta_seconds(100.0, 0, 108.0) is None and eta_seconds(100.0, 100, 108.0) is None
    assert [format_duration(s) for s in (None, 4.4, 125, 3720, 3 * 86400 + 4 * 3600)] == [
        "–", "4s", "2m 05s", "1h 02m", "3d 04h"]


# --- control API (real RQ queue, no worker) ----------------------------------

def test_cancel_a_queued_job_takes_it_off_the_queue(client: FlaskClient, app: Flask) -> None:
    created = client.post("/api/jobs").get_json()
    job_id = created["id"]
    raw = redis.Redis.from_url(app.config["REDIS_URL"])
    queue = Queue(app.config["QUEUE_NAME"], connection=raw, serializer=SERIALIZER)
    assert queue.count == 1
    resp = client.post(f"/api/jobs/{job_id}/cancel", headers=owner_auth(created))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["state"]["state"] == "cancelled"
    assert queue.count == 0
    assert Job.fetch(job_id, connection=raw, serializer=SERIALIZER).get_status() == JobStatus.CANCELED
    again = client.post(f"/api/jobs/{job_id}/cancel", headers=owner_auth(created))
    assert again.status_code == 409 and "cancelled" in again.get_json()["error"]


def test_retry_a_cancelled_job_enqueues_it_again(client: FlaskClient, app: Flask) -> None:
    created = client.post("/api/jobs").get_json()
    job_id = created["id"]
    client.post(f"/api/jobs/{job_id}/cancel", headers=owner_auth(created))
    resp = client.post(f"/api/jobs/{job_id}/retry", headers=owner_auth(created))
    assert resp.status_code == 202, resp.get_data(as_text=True)
    assert resp.get_json()["state"] == {"jobId": job_id, "progress": 0, "state": "queued",
                                        "message": ""}
    raw = redis.Redis.from_url(app.config["REDIS_URL"])
    rq_job = Job.fetch(job_id, connection=raw, serializer=SERIALIZER)
    assert rq_job.get_status() == JobStatus.QUEUED
    assert rq_job.func_name == RUN_KIND_JOB and list(rq_job.args) == [job_id]
    assert Queue(app.config["QUEUE_NAME"], connection=raw, serializer=SERIALIZER).job_ids == [job_id]
    assert client.get(f"/api/jobs/{job_id}").get_json()["state"] == "queued"


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_control_of_an_unknown_job_is_404(config: Config, action: str) -> None:
    client = make_app(config).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = ops_auth()["Authorization"]
    for job_id in (new_id(), "not-a-uuid"):
        resp = client.post(f"/api/jobs/{job_id}/{action}")
        assert resp.status_code == 404 and resp.get_json() == {"error": "unknown job id"}
    page = client.post(f"/jobs/{new_id()}/{action}", headers={"Accept": "text/html"},
                       data={"csrf_token": csrf_token_in(client.get("/").data)})
    assert page.status_code == 404 and "unknown job id" in page.get_data(as_text=True)


def test_invalid_transitions_are_409_and_change_nothing(config: Config,
                                                        store: JobStore) -> None:
    client = make_app(config).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = ops_auth()["Authorization"]
    done, running = new_id(), new_id()
    for job_id in (done, running):
        store.create(job_id)
    store.apply(ProgressUpdate(done, 100, SUCCEEDED))
    store.apply(ProgressUpdate(running, 40, RUNNING, "busy"))
    assert client.post(f"/api/jobs/{done}/cancel").status_code == 409
    assert client.post(f"/api/jobs/{done}/retry").status_code == 409
    resp = client.post(f"/api/jobs/{running}/retry")
    assert resp.status_code == 409 and "running" in resp.get_json()["error"]
    assert store.get(running).to_payload() == {  # type: ignore[union-attr]
        "jobId": running, "progress": 40, "state": "running", "message": "busy"}


def test_cancel_button_redirects_to_the_page_showing_cancelled(client: FlaskClient) -> None:
    token = csrf_token_in(client.get("/").data)
    job_id = client.post("/jobs", data={"csrf_token": token}).headers["Location"].split("/")[-1]
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert f'action="/jobs/{job_id}/cancel"' in page
    resp = client.post(f"/jobs/{job_id}/cancel", data={"csrf_token": csrf_token_in(page)})
    assert resp.status_code == 303 and resp.headers["Location"].endswith(f"/jobs/{job_id}")
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert '<strong id="state">cancelled</strong>' in page
    assert re.search(r'<form id="retry-form"[^>]*action="/jobs/[^"]+/retry">', page)
    assert re.search(r'<form id="cancel-form"[^>]* hidden>', page)


# --- health ------------------------------------------------------------------

def test_health_is_503_without_a_worker_and_200_when_workers_are_not_checked(
        config: Config) -> None:
    resp = make_app(config).test_client().get("/healthz", headers=ops_auth())
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["status"] == "unavailable" and body["redis"]["ok"] is True
    assert body["workers"]["ok"] is False and body["workers"]["seen"] == 0
    resp = make_app(config, HEALTH_WORKER_MAX_AGE=0).test_client().get("/healthz")
    assert resp.status_code == 200 and resp.get_json()["status"] == "ok"


def test_health_is_503_when_redis_is_unreachable(config: Config) -> None:
    app = make_app(config, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                   HEALTH_WORKER_MAX_AGE=0)
    resp = app.test_client().get("/healthz", headers=ops_auth())
    assert resp.status_code == 503
    body = resp.get_json()
    # a generic message: the Redis host and port go to the log only
    assert body["redis"] == {"ok": False, "error": "Redis is unreachable"}
    assert body["web"]["ok"] is True
    metrics = app.test_client().get("/metrics", headers=ops_auth()).get_data(as_text=True)
    assert metric(metrics, "jobcast_redis_up") == 0


# --- metrics -----------------------------------------------------------------

def test_callback_counters_and_latency_move(config: Config, store: JobStore) -> None:
    client = make_app(config).test_client()

    def scrape() -> str:
        resp = client.get("/metrics", headers=ops_auth())
        assert resp.status_code == 200 and resp.mimetype == "text/plain"
        return resp.get_data(as_text=True)

    before = scrape()
    assert metric(before, 'jobcast_callbacks_total{result="applied"}') == 0
    job_id = new_id()
    store.create(job_id)
    body = {"jobId": job_id, "progress": 20, "state": "running", "seq": 1}
    assert client.post("/api/progress", json=body, headers=auth()).status_code == 204
    dup = client.post("/api/progress", json=body, headers=auth())
    assert dup.status_code == 204 and dup.headers["X-Jobcast-Applied"] == "0"
    assert dup.headers["X-Jobcast-State"] == "running"
    assert client.post("/api/progress", json=body, headers=auth("wrong")).status_code == 401
    after = scrape()
    assert metric(after, 'jobcast_callbacks_total{result="applied"}') == 1
    assert metric(after, 'jobcast_callbacks_total{result="ignored"}') == 1
    assert metric(after, 'jobcast_callbacks_total{result="refused"}') == 1
    assert metric(after, "jobcast_callback_emit_seconds_count") == 1
    assert metric(after, 'jobcast_jobs{state="running"}') == 1
    assert metric(after, "jobcast_redis_up") == 1
    assert metric(after, "jobcast_socketio_clients") == 0


def test_each_app_has_its_own_registry(config: Config) -> None:
    first, second = make_app(config), make_app(config)
    first.test_client().post("/api/progress", json={}, headers=auth("wrong"))
    text = second.test_client().get("/metrics", headers=ops_auth()).get_data(as_text=True)
    assert metric(text, 'jobcast_callbacks_total{result="refused"}') == 0


# --- dashboard and the operator token ------------------------------------------

def test_dashboard_lists_jobs_newest_first_with_kind_and_pages(config: Config,
                                                                store: JobStore) -> None:
    client = make_app(config, DASHBOARD_PAGE_SIZE=2).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = ops_auth()["Authorization"]
    ids = [new_id() for _ in range(3)]
    store.create(ids[0], kind="demo")
    store.create(ids[1], kind="highlight", snippet_id=new_id())
    store.create(ids[2], kind="demo")
    store.apply(ProgressUpdate(ids[2], 60, RUNNING, stage="crunching"))
    first = client.get("/dashboard").get_data(as_text=True)
    rows = re.findall(r'<tr data-job-id="([^"]+)"', first)
    assert rows == [ids[2], ids[1]]
    assert "running (crunching)" in first and ">highlight" in first
    older = re.search(r'rel="next" href="(/dashboard\?cursor=[^"]+)"', first)
    assert older is not None
    second = client.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert re.findall(r'<tr data-job-id="([^"]+)"', second) == [ids[0]]
    assert 'rel="next"' not in second and 'rel="first" href="/dashboard"' in second
    for bad in ("cursor=abc", "cursor=1.5~x", "state=sleeping", "q=" + "x" * 101):
        assert client.get(f"/dashboard?{bad}").status_code == 400


def test_ops_token_guards_dashboard_and_metrics(config: Config) -> None:
    client = make_app(config, OPS_TOKEN="s3cret").test_client()
    resp = client.get("/dashboard")
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get("/metrics").status_code == 401
    basic = base64.b64encode(b"ops:s3cret").decode()
    assert client.get("/dashboard", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert client.get("/metrics", headers=auth("s3cret")).status_code == 200
    assert client.get("/metrics", headers=auth("wrong")).status_code == 401
    assert client.get("/healthz").status_code in (200, 503)  # never behind the token


# --- request log ---------------------------------------------------------------

def test_one_log_line_per_request_with_the_job_id(client: FlaskClient, store: JobStore,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    job_id = new_id()
    store.create(job_id)
    with caplog.at_level(logging.INFO, logger="website.http.access"):
        client.get(f"/jobs/{job_id}")
        client.post("/api/progress", json={"jobId": job_id, "progress": 10, "state": "running"},
                    headers=auth())
    lines = [r.getMessage() for r in caplog.records if r.name == "website.http.access"]
    assert len(lines) == 2, lines
    assert re.fullmatch(rf"GET /jobs/{job_id} 200 [\d.]+ms job={job_id}", lines[0])
    assert re.fullmatch(rf"POST /api/progress 204 [\d.]+ms job={job_id}", lines[1])


def test_config_reads_the_ops_settings() -> None:
    cfg = Config(environ={"SECRET_KEY": TEST_SECRET_KEY, "PROGRESS_TOKEN": TEST_PROGRESS_TOKEN,
                          "WORKER_TOKEN": "w", "HEALTH_WORKER_MAX_AGE": "30", "DASHBOARD_PAGE_SIZE": "500",
                          "WORKER_TTL": "25"})
    assert (cfg.HEALTH_WORKER_MAX_AGE, cfg.DASHBOARD_PAGE_SIZE, cfg.WORKER_TTL) == (30, 100, 25)


def test_highlight_jobs_show_on_the_dashboard_with_their_snippet_and_can_be_cancelled(
        config: Config) -> None:
    client = make_app(config).test_client()
    resp = client.post("/api/snippets", json={"source": "print(1)", "language": "python"})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    created = resp.get_json()
    snippet_id = created["id"]
    page = client.get("/dashboard", headers=ops_auth()).get_data(as_text=True)
    [job_id] = re.findall(r'<tr data-job-id="([^"]+)"', page)
    assert ">highlight" in page and f'href="/snippets/{snippet_id}">snippet</a>' in page
    cancelled = client.post(f"/api/jobs/{job_id}/cancel", headers=owner_auth(created))
    assert cancelled.status_code == 200 and cancelled.get_json()["state"]["state"] == "cancelled"
    assert client.post(f"/api/jobs/{job_id}/retry", headers=owner_auth(created)).status_code == 202


def test_worker_names_are_shortened_for_the_dashboard() -> None:
    from shared.fleet import short_worker_name

    assert short_worker_name("0123456789abcdef0123456789abcdef") == "01234567"  # RQ's default
    assert short_worker_name("web-1.example.org.4242") == "web-1.example.org.4242"
    long_name = "a-very-long-host-name.example.org.123456"
    assert short_worker_name(long_name) == long_name[:23] + "…"
    assert short_worker_name("0123456789ABCDEF0123456789ABCDEF") != "01234567"  # not RQ's form
