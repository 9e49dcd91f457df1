"""Attacks from issue #13 (parts 1, 5, 7), in process over a real Redis and a real
RQ queue: each test is a refusal, and checks that nothing changed.

The end-to-end ones (real gunicorn, real worker) are in test_attacks_stack.py.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus

from shared.config import WORKER, Config, ConfigError
from shared.protocol import new_id, seq_limit
from shared.rqconf import SERIALIZER
from shared.signing import read_job_token, sign_control_token, sign_job_token
from tests.support import TEST_PROGRESS_TOKEN, TEST_SECRET_KEY, auth, csrf_token_in, wait_until
from website import create_app
from website.auth.operators import dashboard_serializer, dashboard_token, dashboard_token_ok
from website.extensions import socketio

OPS = "test-ops-token"


def make_app(config: Config, **overrides: object) -> Flask:
    """The site with ``overrides`` applied to the (test) config."""
    for key, value in overrides.items():
        setattr(config, key, value)
    app = create_app(config)
    app.config["TESTING"] = True
    return app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_api(client: FlaskClient) -> dict[str, Any]:
    resp = client.post("/api/jobs")
    assert resp.status_code == 202
    return resp.get_json()  # type: ignore[no-any-return]


def create_form(client: FlaskClient) -> str:
    """Start a job with the home page's form (the session owns it); its id."""
    resp = client.post("/jobs", data={"csrf_token": csrf_token_in(client.get("/").data)})
    assert resp.status_code == 303
    return str(resp.headers["Location"].rsplit("/", 1)[-1])


def state_of(client: FlaskClient, job_id: str, **headers: str) -> dict[str, Any]:
    resp = client.get(f"/api/jobs/{job_id}", headers=headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()  # type: ignore[no-any-return]


def rq_queue(app: Flask) -> Queue:
    return Queue(app.config["QUEUE_NAME"], connection=redis.Redis.from_url(app.config["REDIS_URL"]),
                 serializer=SERIALIZER)


# --- 1. only the owner and operators control a job ----------------------------------


def test_a_stranger_cannot_cancel_or_retry_and_nothing_changes(config: Config) -> None:
    app = make_app(config, OPS_TOKEN=OPS)
    owner, stranger = app.test_client(), app.test_client()
    created, other = create_api(owner), create_api(owner)
    job_id = created["id"]
    queue = rq_queue(app)
    wrong_tokens = [None, "", other["controlToken"],  # another job's control token
                    sign_job_token(TEST_SECRET_KEY, job_id),  # the worker's callback token
                    sign_control_token("another-secret", job_id), TEST_PROGRESS_TOKEN, "x"]
    for token in wrong_tokens:
        headers = bearer(token) if token is not None else {}
        resp = stranger.post(f"/api/jobs/{job_id}/cancel", headers=headers)
        assert resp.status_code == 403, (token, resp.get_data(as_text=True))
        assert "owner" in resp.get_json()["error"]
    page = stranger.post(f"/jobs/{job_id}/cancel", headers={"Accept": "text/html"},
                         data={"csrf_token": csrf_token_in(stranger.get("/").data)})
    assert page.status_code == 403 and "owner" in page.get_data(as_text=True)
    assert state_of(stranger, job_id)["state"] == "queued"
    assert job_id in queue.job_ids  # still queued in RQ: the worker will run it
    # once the owner cancelled it, a stranger cannot retry it either
    assert owner.post(f"/api/jobs/{job_id}/cancel",
                      headers=bearer(created["controlToken"])).status_code == 200
    for token in wrong_tokens[1:]:
        assert stranger.post(f"/api/jobs/{job_id}/retry", headers=bearer(str(token))
                             ).status_code == 403
    assert state_of(stranger, job_id)["state"] == "cancelled"
    assert job_id not in queue.job_ids
    cancelled = Job.fetch(job_id, connection=queue.connection, serializer=SERIALIZER)
    assert cancelled.get_status() == JobStatus.CANCELED


def test_the_owner_session_the_api_client_and_operators_may_control(config: Config) -> None:
    app = make_app(config, OPS_TOKEN=OPS)
    browser, stranger, operator = app.test_client(), app.test_client(), app.test_client()
    job_id = create_form(browser)
    own_page = browser.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert 'id="cancel-form"' in own_page and 'id="retry-form"' in own_page
    other_page = stranger.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "cancel-form" not in other_page and "retry-form" not in other_page
    assert "Cancel job" not in other_page
    cancelled = browser.post(f"/jobs/{job_id}/cancel", data={"csrf_token": csrf_token_in(own_page)})
    assert cancelled.status_code == 303
    assert operator.post(f"/api/jobs/{job_id}/retry", headers=bearer(OPS)).status_code == 202
    operator_page = operator.get(f"/jobs/{job_id}", headers=bearer(OPS)).get_data(as_text=True)
    assert 'id="cancel-form"' in operator_page
    created = create_api(stranger)  # the API client owns its job through its token
    assert stranger.post(f"/api/jobs/{created['id']}/cancel",
                         headers=bearer(created["controlToken"])).status_code == 200


def test_a_session_remembers_a_bounded_number_of_jobs(config: Config) -> None:
    from website.auth.owners import SESSION_JOBS

    client = make_app(config, RATE_LIMIT="0").test_client()
    ids = [create_form(client) for _ in range(SESSION_JOBS + 2)]
    cookie = client.get_cookie("session")
    assert cookie is not None and len(cookie.value) < 4000
    # the oldest is off the cookie's list but carries the session's owner id
    assert "cancel-form" in client.get(f"/jobs/{ids[0]}").get_data(as_text=True)
    assert "cancel-form" in client.get(f"/jobs/{ids[-1]}").get_data(as_text=True)
    stranger = client.application.test_client()
    assert "cancel-form" not in stranger.get(f"/jobs/{ids[0]}").get_data(as_text=True)


def test_operator_pages_are_closed_in_production_without_ops_token(config: Config) -> None:
    client = make_app(config, OPS_TOKEN="").test_client()
    for path in ("/dashboard", "/metrics"):
        resp = client.get(path, headers={"Accept": "text/html"})
        assert resp.status_code == 401, path
        assert "set OPS_TOKEN" in resp.get_data(as_text=True)
        # an empty bearer is not the (empty) operator token
        assert client.get(path, headers={"Authorization": "Bearer "}).status_code == 401


def test_operator_pages_are_open_in_development_with_a_warning(
        redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="website"):
        app = create_app(Config(environ={"JOBCAST_ENV": "development"}, REDIS_URL=redis_url,
                                ASYNC_MODE="threading"))
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "OPS_TOKEN is not set" in warnings and "DEVELOPMENT SECRETS" in warnings
    assert app.test_client().get("/dashboard").status_code == 200
    # ... but a development site is no operator for job control
    job_id = create_api(app.test_client())["id"]
    assert app.test_client().post(f"/api/jobs/{job_id}/cancel").status_code == 403


def test_a_dashboard_token_dies_with_its_ops_token_and_after_an_hour(config: Config) -> None:
    app = make_app(config, OPS_TOKEN=OPS)
    with app.test_request_context():
        token = dashboard_token()
        assert dashboard_token_ok(token)
        old = dashboard_serializer()
        old.signer = type("HourOld", (TimestampSigner,), {  # type: ignore[assignment]
            "get_timestamp": lambda self: int(time.time()) - 3601})
        assert not dashboard_token_ok(old.dumps("dashboard"))
    rotated = make_app(Config(environ={}, WORKER_TOKEN="w", SECRET_KEY=TEST_SECRET_KEY,
                              PROGRESS_TOKEN=TEST_PROGRESS_TOKEN, REDIS_URL=config.REDIS_URL,
                              ASYNC_MODE="threading", OPS_TOKEN="rotated"))
    with rotated.test_request_context():
        assert not dashboard_token_ok(token)


def test_snippet_pages_and_json_do_not_reveal_job_ids(client: FlaskClient,
                                                      redis_client: redis.Redis) -> None:
    token = csrf_token_in(client.get("/snippets").data)
    page = client.post("/snippets", data={"csrf_token": token, "source": "x = 1",
                                          "language": "python"})
    api = client.post("/api/snippets", json={"source": "y = 2", "language": "python"})
    assert page.status_code == 303 and api.status_code == 202
    ids = [page.headers["Location"].rsplit("/", 1)[-1], api.get_json()["id"]]
    job_ids = [redis_client.hget(f"jobcast:snippet:{sid}", "job_id") for sid in ids]
    assert all(job_ids)
    texts = [api.get_data(as_text=True), client.get("/snippets").get_data(as_text=True)]
    for sid in ids:
        for path in (f"/snippets/{sid}", f"/api/snippets/{sid}", f"/snippets/{sid}/highlighted"):
            resp = client.get(path)
            texts.append(resp.get_data(as_text=True) + str(dict(resp.headers)))
    for text in texts:
        for job_id in job_ids:
            assert str(job_id) not in text
    assert "jobId" not in api.get_json() and "controlToken" in api.get_json()


def test_private_jobs_are_404_to_everyone_but_owner_and_operators(config: Config) -> None:
    app = make_app(config, OPS_TOKEN=OPS, JOB_VISIBILITY="owner")
    browser, api_client, stranger = app.test_client(), app.test_client(), app.test_client()
    session_job = create_form(browser)
    created = create_api(api_client)
    job_id, token = created["id"], created["controlToken"]
    unknown = stranger.get(f"/api/jobs/{new_id()}")
    for path in (f"/api/jobs/{job_id}", f"/api/jobs/{session_job}"):
        refused = stranger.get(path)
        assert (refused.status_code, refused.get_json()) == (404, unknown.get_json())
    assert stranger.get(f"/jobs/{job_id}").status_code == 404
    assert stranger.post(f"/api/jobs/{job_id}/cancel").status_code == 404
    assert state_of(api_client, job_id, **bearer(token))["state"] == "queued"
    assert state_of(stranger, job_id, **bearer(OPS))["state"] == "queued"
    assert state_of(browser, session_job)["state"] == "queued"
    assert browser.get(f"/jobs/{session_job}").status_code == 200
    # Socket.IO: connect with ?jobId= and subscribe
    spy = socketio.test_client(app, query_string=f"jobId={job_id}")
    assert not spy.is_connected()
    spy = socketio.test_client(app)
    ack = spy.emit("subscribe", {"jobId": job_id}, callback=True)
    assert ack == {"ok": False, "error": f"unknown job {job_id}"} and spy.get_received() == []
    own = socketio.test_client(app, query_string=f"jobId={job_id}", auth={"controlToken": token})
    assert own.is_connected() and own.get_received()[0]["args"][0]["jobId"] == job_id
    assert spy.emit("subscribe", {"jobId": job_id, "controlToken": token},
                    callback=True) == {"ok": True}
    mine = socketio.test_client(app, flask_test_client=browser, query_string=f"jobId={session_job}")
    assert mine.is_connected()


def test_by_default_anyone_with_the_id_reads_a_job(client: FlaskClient, app: Flask) -> None:
    job_id = create_api(app.test_client())["id"]
    assert state_of(client, job_id)["state"] == "queued"
    assert socketio.test_client(app, query_string=f"jobId={job_id}").is_connected()


# --- 5. seq belongs to the attempt ---------------------------------------------------


def report(client: FlaskClient, body: dict[str, Any], token: str = TEST_PROGRESS_TOKEN) -> Any:
    return client.post("/api/progress", json=body, headers=auth(token))


def test_a_seq_far_ahead_is_refused_and_later_reports_still_apply(client: FlaskClient) -> None:
    job_id = create_api(client)["id"]
    for seq in (2**53 - 1, seq_limit(time.time()) + 10**6):
        resp = report(client, {"jobId": job_id, "progress": 10, "state": "running", "seq": seq})
        assert resp.status_code == 400 and "seq" in resp.get_json()["error"]
    assert state_of(client, job_id)["state"] == "queued"
    ok = report(client, {"jobId": job_id, "progress": 20, "state": "running",
                         "seq": time.time_ns() // 1000})
    assert ok.status_code == 204 and ok.headers["X-Jobcast-Applied"] == "1"


def test_a_retry_is_a_new_attempt_with_its_own_token_and_seq(config: Config) -> None:
    # CANCEL_GRACE=0: the running job is cancelled at once (no worker here to ask).
    app = make_app(config, OPS_TOKEN=OPS, CANCEL_GRACE=0)
    client = app.test_client()
    job_id, owner = create_api(client)["id"], bearer(OPS)
    conn = rq_queue(app).connection
    first = Job.fetch(job_id, connection=conn, serializer=SERIALIZER).kwargs["token"]
    high = seq_limit(time.time()) - 10**6  # the largest a worker could send now
    assert report(client, {"jobId": job_id, "progress": 30, "state": "running", "seq": high},
                  first).status_code == 204
    assert client.post(f"/api/jobs/{job_id}/cancel", headers=owner).status_code == 200
    assert client.post(f"/api/jobs/{job_id}/retry", headers=owner).status_code == 202
    second = Job.fetch(job_id, connection=conn, serializer=SERIALIZER).kwargs["token"]
    grant = read_job_token(TEST_SECRET_KEY, second, max_age=60)
    assert second != first and grant is not None and (grant.job_id, grant.attempt) == (job_id, 2)
    stale = report(client, {"jobId": job_id, "progress": 90, "state": "running", "seq": high + 1},
                   first)
    assert stale.status_code == 409 and "attempt 2" in stale.get_json()["error"]
    assert state_of(client, job_id).items() >= {"jobId": job_id, "progress": 0,  # + place
                                                "state": "queued", "message": ""}.items()
    fresh = report(client, {"jobId": job_id, "progress": 10, "state": "running", "seq": 1},
                   second)
    assert fresh.status_code == 204 and fresh.headers["X-Jobcast-Applied"] == "1"


def test_a_job_token_expires(config: Config) -> None:
    client = make_app(config, JOB_TOKEN_MAX_AGE=1).test_client()
    job_id = create_api(client)["id"]
    token = sign_job_token(TEST_SECRET_KEY, job_id)
    progress = iter(range(1, 100))

    def send() -> int:
        return int(report(client, {"jobId": job_id, "progress": next(progress),
                                   "state": "running"}, token).status_code)

    assert send() == 204
    wait_until(lambda: send() == 401, timeout=5, interval=0.2, what="the token to expire")


# --- 7. smaller ------------------------------------------------------------------------


def test_a_non_ascii_job_id_with_a_valid_token_is_400_not_500(client: FlaskClient) -> None:
    for job_id in ("ü", "jöb-€"):
        resp = report(client, {"jobId": job_id, "progress": 1, "state": "running"},
                      sign_job_token(TEST_SECRET_KEY, job_id))
        assert resp.status_code == 400 and "UUID" in resp.get_json()["error"]
        other = report(client, {"jobId": job_id, "progress": 1, "state": "running"},
                       sign_job_token(TEST_SECRET_KEY, "ä"))
        assert other.status_code == 401


def test_a_newline_in_a_request_id_does_not_forge_log_lines(
        client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    forged = "x\n2026-01-01 00:00:00 INFO website: job cancelled by admin"
    with caplog.at_level(logging.DEBUG, logger="website"):
        client.post(f"/api/jobs/{forged}/cancel")
        client.get(f"/jobs/{forged}")
        report(client, {"jobId": forged, "progress": 1, "state": "running"})
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("website")]
    assert len([m for m in lines if "job cancelled by admin" in m]) >= 3
    assert not [m for m in lines if "\n" in m or "\r" in m], lines


def test_only_trusted_hosts_are_answered(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/").status_code == 200  # Host: localhost (SITE_URL is 127.0.0.1)
    for host in ("evil.example", "127.0.0.1.evil.example", "attacker.test:5000"):
        assert client.get("/", headers={"Host": host}).status_code == 400, host
        socket_io = client.get("/socket.io/?EIO=4&transport=polling", headers={"Host": host})
        assert socket_io.status_code == 400, host
    assert client.get("/socket.io/?EIO=4&transport=polling").status_code == 200
    public = Config(environ={}, WORKER_TOKEN="w", SECRET_KEY="s", PROGRESS_TOKEN="p",
                    SITE_URL="https://jobs.example.com")
    assert public.TRUSTED_HOSTS == ["jobs.example.com"]
    dev = Config(environ={"JOBCAST_ENV": "development"}, SITE_URL="https://jobs.example.com")
    assert set(dev.TRUSTED_HOSTS) == {"jobs.example.com", "localhost", "127.0.0.1"}
    assert Config(environ={}, WORKER_TOKEN="w", SECRET_KEY="s", PROGRESS_TOKEN="p",
                  TRUSTED_HOSTS="a.example, b.example").TRUSTED_HOSTS == ["a.example", "b.example"]


def test_development_secrets_refuse_to_listen_beyond_loopback() -> None:
    dev = {"JOBCAST_ENV": "development"}
    for bind in ("0.0.0.0:5000", "192.0.2.7:80", "[::]:5000"):
        with pytest.raises(ConfigError, match="development secrets"):
            Config(environ={**dev, "WEB_BIND": bind})
    for bind in ("127.0.0.1:5000", "localhost:8000", "[::1]:5000"):
        assert Config(environ={**dev, "WEB_BIND": bind}).uses_dev_secrets
    real = Config(environ={**dev, "WEB_BIND": "127.0.0.1:5000", "SECRET_KEY": "k",
                           "PROGRESS_TOKEN": "p", "WORKER_TOKEN": "w"})
    assert not real.uses_dev_secrets  # development mode still binds to loopback only:
    # tests/test_attacks_small.py::test_development_mode_refuses_a_web_bind_beyond_loopback


def test_the_worker_needs_no_secret_key_but_the_site_does() -> None:
    worker = Config(environ={"PROGRESS_TOKEN": "p"}, role=WORKER)
    assert worker.SECRET_KEY == "" and worker.PROGRESS_TOKEN == "p"
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        Config(environ={"PROGRESS_TOKEN": "p"})
    with pytest.raises(ConfigError, match="PROGRESS_TOKEN"):
        Config(environ={"SECRET_KEY": "k"}, role=WORKER)


def test_healthz_does_not_echo_the_redis_error(config: Config) -> None:
    from tests.support import free_port

    port = free_port()
    resp = make_app(config, REDIS_URL=f"redis://127.0.0.1:{port}/0").test_client().get(
        "/healthz", headers=auth(config.OPS_TOKEN))
    assert resp.status_code == 503
    assert str(port) not in resp.get_data(as_text=True)
    assert resp.get_json()["redis"] == {"ok": False, "error": "Redis is unreachable"}


def explode(job_id: str, token: str | None = None) -> None:
    """A job that fails (enqueued by the test below)."""
    raise RuntimeError(f"job {job_id} failed on purpose")


def test_a_failing_job_does_not_put_its_token_on_log_records(redis_url: str) -> None:
    from worker import logsafety

    token = sign_job_token(TEST_SECRET_KEY, "x") + "-SECRET"
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    rq_log = logging.getLogger(logsafety.RQ_WORKER_LOGGER)
    rq_log.addHandler(handler)
    try:
        logsafety.install()
        conn = redis.Redis.from_url(redis_url)
        queue = Queue("attacks", connection=conn, serializer=SERIALIZER)
        job = queue.enqueue(explode, new_id(), token=token)
        SimpleWorker([queue], connection=conn, log_job_description=False,
                     serializer=SERIALIZER).work(burst=True)
        assert job.get_status(refresh=True) == JobStatus.FAILED
    finally:
        rq_log.removeHandler(handler)
    failure = [r for r in records if "exception raised while executing" in r.getMessage()]
    assert failure, [r.getMessage() for r in records]
    for record in records:
        assert token not in str(record.__dict__), record.__dict__
