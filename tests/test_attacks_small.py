"""Attacks from issue #26, section 5 ("Smaller"): each reproduces one, and fails on the
code before its fix.

* ``WORKER_TOKEN`` wrote any job, heartbeats told the state of private jobs, and a
  shared-token report with a ``seq`` far ahead silenced the worker holding the job.
* Development mode checked ``WEB_BIND``, not the address gunicorn really bound.
* The embedded Redis had no password, and RQ unpickled whatever a local user queued.
* ``/healthz`` showed anyone the worker names and the store's limits.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import redis.connection
import requests
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import PickleSerializer

from shared import keys
from shared.config import Config, ConfigError
from shared.protocol import RUN_KIND_JOB
from shared.rqconf import SERIALIZER
from shared.signing import sign_job_token
from tests.conftest import Stack
from tests.launching import launch, make_project, user_env
from tests.support import (
    ROOT,
    TEST_OPS_TOKEN,
    TEST_PROGRESS_TOKEN,
    TEST_SECRET_KEY,
    TEST_WORKER_TOKEN,
    auth,
    free_port,
    stack_env,
    start_job,
    start_web,
    wait_until,
)
from tests.support import job_state as read_state
from website import create_app


def make_app(config: Config, **overrides: object) -> Flask:
    """The site with ``overrides`` applied to the (test) config."""
    for key, value in overrides.items():
        setattr(config, key, value)
    app = create_app(config)
    app.config["TESTING"] = True
    return app


def start(client: FlaskClient, kind: str = "demo") -> str:
    """Start a job of ``kind`` over the API (no worker runs it here); its id."""
    resp = client.post("/api/jobs", json={"kind": kind, "args": {}})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    return str(resp.get_json()["id"])


def report(client: FlaskClient, body: Any, token: str) -> Any:
    return client.post("/api/progress", json=body, headers=auth(token))


def stored(app: Flask, job_id: str) -> dict[str, str]:
    """The job's hash, as Redis holds it."""
    from website.extensions import core

    with app.app_context():
        return core.client.hgetall(keys.job_key(job_id))  # type: ignore[return-value]


# -- 1. WORKER_TOKEN writes only jobs of external kinds -----------------------------------


def test_worker_token_cannot_cancel_an_internal_job(client: FlaskClient, app: Flask) -> None:
    """The reproduced attack: ``POST /api/progress`` with WORKER_TOKEN set an internal
    demo job to cancelled. Alone or in a batch it is now refused as an unknown job."""
    job_id = start(client)
    cancel = {"jobId": job_id, "state": "cancelled", "message": "pwned"}
    refused = report(client, cancel, TEST_WORKER_TOKEN)
    assert refused.status_code == 404, refused.get_data(as_text=True)
    assert "external kinds" in refused.get_json()["error"]
    batch = report(client, [cancel, {"jobId": job_id, "state": "running", "progress": 50}],
                   TEST_WORKER_TOKEN)
    assert [r["status"] for r in batch.get_json()["results"]] == [404, 404]
    state = stored(app, job_id)
    assert (state["state"], state["progress"], state["message"]) == ("queued", "0", "")
    # The internal worker's own tokens still report for it: its per-job token, and
    # PROGRESS_TOKEN (a job started without SECRET_KEY).
    own = sign_job_token(TEST_SECRET_KEY, job_id)
    assert report(client, {"jobId": job_id, "state": "running", "progress": 10},
                  own).status_code == 204
    assert report(client, {"jobId": job_id, "state": "running", "progress": 20},
                  TEST_PROGRESS_TOKEN).status_code == 204
    assert stored(app, job_id)["progress"] == "20"


def test_worker_token_still_reports_for_external_jobs(client: FlaskClient) -> None:
    job_id = start(client, "external")
    resp = report(client, {"jobId": job_id, "state": "running", "progress": 5},
                  TEST_WORKER_TOKEN)
    assert resp.status_code == 204 and resp.headers["X-Jobcast-Applied"] == "1"


def test_heartbeats_tell_nothing_of_jobs_that_are_not_external(config: Config) -> None:
    """The reproduced attack: heartbeats revealed the state of jobs private under
    ``JOB_VISIBILITY=owner``; a job RQ runs now answers as an unknown one."""
    app = make_app(config, JOB_VISIBILITY="owner")
    client = app.test_client()
    private = start(client)
    assert app.test_client().get(f"/api/jobs/{private}").status_code == 404
    beat = client.post("/api/workers/heartbeat", headers=auth(TEST_WORKER_TOKEN),
                       json={"jobIds": [private, {"jobId": private, "attempt": 1}]})
    assert beat.status_code == 200
    assert beat.get_json()["jobs"] == [
        {"jobId": private, "state": None, "attempt": None, "held": False}] * 2


def test_a_shared_token_seq_far_ahead_does_not_silence_the_claims_worker(
        client: FlaskClient, app: Flask) -> None:
    """The reproduced attack: a WORKER_TOKEN report with ``seq`` = now + 299 s dropped
    every later report of the worker counting 1, 2, 3 with the claim's token."""
    job_id = start(client, "external")
    got = client.post("/api/workers/claim", headers=auth(TEST_WORKER_TOKEN),
                      json={"kinds": ["external"], "worker": "honest", "wait": 0})
    assert got.status_code == 200 and got.get_json()["jobId"] == job_id
    token = got.get_json()["token"]
    ahead = int((time.time() + 299) * 1_000_000)
    spoiler = report(client, {"jobId": job_id, "state": "running", "progress": 1, "seq": ahead,
                              "message": "spoiled"}, TEST_WORKER_TOKEN)
    assert spoiler.status_code == 204
    for seq in (1, 2, 3):
        resp = report(client, {"jobId": job_id, "state": "running", "progress": seq * 10,
                               "seq": seq, "message": f"step {seq}"}, token)
        assert resp.status_code == 204 and resp.headers["X-Jobcast-Applied"] == "1", seq
    state = stored(app, job_id)
    assert (state["progress"], state["message"]) == ("30", "step 3")
    # Each sender's reports still keep their order: a repeat of the worker's is dropped.
    again = report(client, {"jobId": job_id, "state": "running", "progress": 30, "seq": 2,
                            "message": "late"}, token)
    assert again.headers["X-Jobcast-Applied"] == "0"


def test_the_site_refuses_one_token_for_both_roles() -> None:
    with pytest.raises(ConfigError, match="WORKER_TOKEN must differ from PROGRESS_TOKEN"):
        Config(environ={}, SECRET_KEY="s", PROGRESS_TOKEN="same", WORKER_TOKEN="same")


# -- 2. Development mode serves this machine only, whatever gunicorn was told ------------


DEV_SECRETS = {"SECRET_KEY": "real-secret", "PROGRESS_TOKEN": "real-progress",
               "WORKER_TOKEN": "real-worker"}


def test_development_mode_refuses_a_web_bind_beyond_loopback() -> None:
    """With real secrets too: development mode opens the operator pages without OPS_TOKEN."""
    for bind in ("0.0.0.0:5000", "192.0.2.7:80", "[::]:5000"):
        with pytest.raises(ConfigError, match="listens beyond this machine"):
            Config(environ={"JOBCAST_ENV": "development", "WEB_BIND": bind, **DEV_SECRETS})
    assert Config(environ={"WEB_BIND": "0.0.0.0:5000", **DEV_SECRETS}).WEB_BIND == "0.0.0.0:5000"


def gunicorn_env(redis_url: str, **extra: str) -> dict[str, str]:
    """A development-mode web process's environment (WEB_BIND left to its default)."""
    env = stack_env(redis_url, free_port(), JOBCAST_ENV="development")
    for name in ("WEB_BIND", "SITE_URL", "PORT", "SECRET_KEY", "PROGRESS_TOKEN", "WORKER_TOKEN",
                 "OPS_TOKEN"):
        env.pop(name, None)
    return {**env, **extra}


@pytest.mark.parametrize("how", ["dash-b", "reuse-port", "cmd-args"])
def test_gunicorn_in_development_mode_refuses_the_address_it_really_binds(
        how: str, redis_url: str) -> None:
    """The reproduced attack: ``JOBCAST_ENV=development gunicorn -b 0.0.0.0:5313`` served
    an open dashboard on the LAN. Now it exits, saying why, and serves nothing."""
    port = free_port()
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    env = gunicorn_env(redis_url)
    args = {"dash-b": ["-b", f"0.0.0.0:{port}"],
            "reuse-port": ["--reuse-port", "-b", f"0.0.0.0:{port}"], "cmd-args": []}[how]
    if how == "cmd-args":
        env["GUNICORN_CMD_ARGS"] = f"--bind 0.0.0.0:{port}"
    proc = subprocess.Popen([gunicorn, *args, "website:create_app()"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # gunicorn and its worker
        proc.communicate()
        pytest.fail("gunicorn served on 0.0.0.0 in development mode")
    assert proc.returncode != 0, err
    assert "jobcast web: configuration error: gunicorn's bind http://0.0.0.0:" in err
    assert "listens beyond this machine" in err and "Traceback" not in err
    if how != "reuse-port":  # the arbiter refused before starting any worker
        assert "Booting worker" not in err, err
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_gunicorn_in_development_mode_still_serves_on_loopback(
        redis_url: str, log_dir: Path) -> None:
    port = free_port()
    env = gunicorn_env(redis_url, GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port}",
                       SITE_URL=f"http://127.0.0.1:{port}")
    web = start_web(env, log_dir, name="web-dev-loopback")
    web.stop()


def test_development_mode_refuses_requests_from_other_machines(redis_url: str) -> None:
    """Whatever server runs the site (``flask run --host 0.0.0.0``, another gunicorn
    config): a request whose TCP peer is another machine gets 403, and a forwarded
    address does not change that."""
    app = create_app(Config(environ={"JOBCAST_ENV": "development"}, REDIS_URL=redis_url,
                            ASYNC_MODE="threading", TRUSTED_PROXIES=1))
    client = app.test_client()
    lan = {"REMOTE_ADDR": "192.0.2.7"}
    for path in ("/", "/dashboard", "/api/kinds", "/socket.io/?EIO=4&transport=polling"):
        refused = client.get(path, environ_base=lan)
        assert refused.status_code == 403, path
        assert b"serves this machine only" in refused.data
    forwarded = client.get("/dashboard", environ_base=lan, headers={"X-Forwarded-For": "127.0.0.1"})
    assert forwarded.status_code == 403
    for local in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        assert client.get("/", environ_base={"REMOTE_ADDR": local}).status_code == 200, local
    production = create_app(Config(environ={}, REDIS_URL=redis_url, ASYNC_MODE="threading",
                                   **DEV_SECRETS))
    assert production.test_client().get("/", environ_base=lan).status_code == 200


# -- 3. The embedded Redis has a password, which every process uses ---------------------


def test_make_run_gives_the_embedded_redis_a_password_that_every_process_uses(
        tmp_path: Path) -> None:
    """The reproduced attack: any local user reached the embedded Redis (and could queue
    work for the worker). ``make run`` now writes REDIS_PASSWORD to .env; the embedded
    Redis wants it, shows it on no command line, and the site, worker and tick use it."""
    project = make_project(tmp_path)
    port, redis_port = free_port(), free_port()
    env = user_env(PORT=str(port), EMBEDDED_REDIS_PORT=str(redis_port))
    running = launch(project, [sys.executable, "-m", "dev.run"], env, port,
                     tmp_path / "make-run.log")
    try:
        running.wait_serving()
        values = dict(line.split("=", 1) for line in
                      (project / ".env").read_text().splitlines() if line)
        password = values["REDIS_PASSWORD"]
        assert len(password) >= 32, "make run writes a fresh REDIS_PASSWORD to .env"
        stranger = redis.Redis(port=redis_port, socket_timeout=2)
        with pytest.raises(redis.AuthenticationError):
            stranger.ping()
        with pytest.raises(redis.AuthenticationError):
            stranger.lpush("rq:queue:jobcast", "planted")
        stranger.close()
        job_id = start_job(running.url)
        wait_until(lambda: read_state(running.url, job_id)["state"] == "succeeded",
                   timeout=60, what="the job to succeed through the worker")
        owner = redis.Redis(port=redis_port, password=password, socket_timeout=2)
        assert owner.ping()
        owner.close()
        output = running.output()
        assert "cron ticker started" in output
        for failure in ("Redis unavailable", "Authentication", "NOAUTH"):
            assert failure not in output, output  # the tick, site and worker all got in
        family = psutil.Process(running.proc.pid).children(recursive=True)
        for proc in family:
            try:
                assert password not in " ".join(proc.cmdline()), proc.cmdline()
            except psutil.NoSuchProcess:
                continue
        data = project / "var" / "redis"
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE((data / "jobcast-auth.conf").stat().st_mode) == 0o600
    finally:
        running.stop()


def test_the_embedded_redis_wants_a_password_outside_development(tmp_path: Path) -> None:
    env = user_env(EMBEDDED_REDIS_PORT=str(free_port()), PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-m", "dev.redis_server", "--dir",
                             str(tmp_path / "data")], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode != 0
    assert "REDIS_PASSWORD is not set" in result.stderr and "make setup" in result.stderr


def test_the_derived_redis_url_carries_the_password() -> None:
    cfg = Config(environ={"REDIS_PASSWORD": "p w/@:x", "EMBEDDED_REDIS_PORT": "6399",
                          **DEV_SECRETS})
    assert cfg.REDIS_URL == "redis://:p%20w%2F%40%3Ax@127.0.0.1:6399/0"
    assert redis.connection.parse_url(cfg.REDIS_URL)["password"] == "p w/@:x"
    given = "redis://:theirs@redis.example:6379/2"
    assert Config(environ={"REDIS_PASSWORD": "ours", "REDIS_URL": given,
                           **DEV_SECRETS}).REDIS_URL == given


# -- 4. RQ's JSON serializer: a pickled job is never unpickled, let alone run -------------


class Planted:
    """What a local attacker pickles into a job: unpickling it makes a directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.path),))


def test_a_pickled_job_is_not_run_as_code_and_normal_jobs_still_run(
        stack: Stack, tmp_path: Path) -> None:
    """The reproduced attack: a job written with RQ's default (pickle) serializer ran as
    the worker. The worker now loads jobs as JSON: the planted one fails to load, none
    of its code runs (neither its function nor what unpickling it would call)."""
    conn = redis.Redis.from_url(stack.env["REDIS_URL"])
    loaded, ran = tmp_path / "unpickled", tmp_path / "ran"
    pickled = Queue("jobcast", connection=conn, serializer=PickleSerializer)
    planted = pickled.enqueue("os.mkdir", str(ran), payload=Planted(loaded))
    wait_until(lambda: Job.fetch(planted.id, connection=conn,
                                 serializer=SERIALIZER).get_status() == JobStatus.FAILED,
               timeout=30, what="the planted job to fail")
    assert not loaded.exists(), "the worker unpickled the planted job"
    assert not ran.exists(), "the worker ran the planted job"
    assert "DeserializationError" in stack.worker.log_tail(20_000)
    assert stack.worker.alive()
    job_id = stack.start_job()
    wait_until(lambda: stack.job_state(job_id)["state"] == "succeeded", timeout=60,
               what="a normal job to succeed after the planted one")
    stored_job = Job.fetch(job_id, connection=conn, serializer=SERIALIZER)
    raw = conn.hget(f"rq:job:{job_id}", "data")
    assert isinstance(raw, bytes) and json.loads(zlib.decompress(raw))[0] == RUN_KIND_JOB
    assert stored_job.kwargs["kind_name"] == "demo"
    conn.close()


def test_every_rq_object_of_the_site_uses_the_json_serializer(app: Flask) -> None:
    from website.extensions import core
    from website.ops.monitoring import ops

    with app.app_context():
        assert core.lifecycle.queue.serializer is SERIALIZER
        assert ops().queue.serializer is SERIALIZER
    client = app.test_client()
    job_id = start(client)
    with app.app_context():
        raw = core.lifecycle.queue.connection.hget(f"rq:job:{job_id}", "data")
    assert isinstance(raw, bytes)
    assert json.loads(zlib.decompress(raw))[3]["kind_name"] == "demo"


# -- 5. /healthz: up or down for anyone, the detail for operators ------------------------


def test_healthz_tells_strangers_up_or_down_and_operators_the_detail(stack: Stack) -> None:
    """The reproduced attack: ``/healthz`` showed anyone the worker names and the store's
    ``store_limit``/``full`` (when the store fills up: attack 1's timing)."""
    anonymous = requests.get(stack.url + "/healthz", timeout=5)
    assert anonymous.status_code == 200
    assert anonymous.json() == {"status": "ok"}
    wrong = requests.get(stack.url + "/healthz", headers=auth("not-the-ops-token"), timeout=5)
    assert wrong.status_code == 200 and wrong.json() == {"status": "ok"}
    for text in (anonymous.text, wrong.text):
        assert "worker" not in text and "store_limit" not in text and "memory" not in text
    detail = requests.get(stack.url + "/healthz", headers=auth(TEST_OPS_TOKEN), timeout=5)
    body = detail.json()
    assert detail.status_code == 200 and body["status"] == "ok"
    assert body["workers"]["names"] == ["worker"]
    assert {"store_limit", "full"} <= set(body["redis"]["memory"])


def test_healthz_down_is_just_down_for_strangers(config: Config) -> None:
    app = make_app(config, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    down = app.test_client().get("/healthz")
    assert down.status_code == 503 and down.get_json() == {"status": "unavailable"}
    detail = app.test_client().get("/healthz", headers=auth(TEST_OPS_TOKEN)).get_json()
    assert detail["redis"]["ok"] is False and detail["status"] == "unavailable"
