"""Watch tokens and the embedding origins (issue #30, section 2), against a real stack
(gunicorn, RQ worker, Redis) with ``JOB_VISIBILITY=owner`` and one ``EMBED_ORIGINS``
entry: a watch token reads its one job (state, log, Socket.IO) and nothing else, and
only the listed origin gets CORS answers. The refusals are the point."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
import socketio

from shared.config import Config
from shared.signing import sign_watch_token
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import (
    TEST_OPS_TOKEN,
    TEST_SECRET_KEY,
    EventRecorder,
    auth,
    create_job,
    wait_until,
)
from website import create_app

EMBEDDER = "http://embedder.example:8000"
STRANGER = "http://evil.example:8000"
JOB = "/api/jobs/{}"


@pytest.fixture(scope="module")
def site(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A private-jobs stack whose demo job takes about 2 s."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("watch-redis"),
                          JOB_VISIBILITY="owner", EMBED_ORIGINS=f"{EMBEDDER}, ",
                          DEMO_STEP_DELAY="0.2")
    yield running
    stop_stack(running)


def token_for(site: Stack, job_id: str, bearer: str) -> dict[str, Any]:
    resp = requests.post(site.url + JOB.format(job_id) + "/watch-token",
                         headers=auth(bearer), timeout=5)
    assert resp.status_code == 201, resp.text
    assert resp.headers["Cache-Control"] == "no-store"
    return resp.json()  # type: ignore[no-any-return]


def read(site: Stack, path: str, token: str | None = None, **headers: str) -> requests.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.get(site.url + path, headers=headers, timeout=5)


class Watcher(EventRecorder):
    """An :class:`EventRecorder` that connects with a ``watchToken`` in ``auth``."""

    def __init__(self, site: Stack, job_id: str, token: str | None) -> None:
        self.events: list[tuple[str, Any]] = []
        self._cond = threading.Condition()
        self.client = socketio.Client(reconnection=False)
        self.client.on("*", self._record)
        self.client.connect(f"{site.url}?jobId={job_id}", transports=["websocket"],
                            auth={"watchToken": token, "lastLogId": "0-0"}, wait_timeout=10)


def test_the_owner_gets_a_token_that_reads_and_watches_its_private_job(site: Stack) -> None:
    job = create_job(site.url)
    answer = token_for(site, job["id"], job["controlToken"])
    expires = datetime.fromisoformat(answer["expiresAt"].replace("Z", "+00:00")).timestamp()
    assert 3590 < expires - time.time() <= 3601, answer  # WATCH_TOKEN_SECONDS' default
    token = answer["token"]

    state = read(site, JOB.format(job["id"]), token)
    assert state.status_code == 200 and state.json()["jobId"] == job["id"]
    assert "webhook" not in state.json()  # the reader's view, not the owner's
    rec = Watcher(site, job["id"], token)
    try:
        rec.wait_for(lambda ev: any(name == "updateProgress" and data["state"] == "succeeded"
                                    for name, data in ev), timeout=20, what="the job to succeed")
    finally:
        rec.close()
    log = read(site, JOB.format(job["id"]) + "/log", token)
    assert log.status_code == 200 and log.json()["lines"], log.text


def test_an_api_key_and_an_operator_get_tokens_a_stranger_does_not(site: Stack) -> None:
    key, another = (requests.post(site.url + "/api/keys", headers=auth(TEST_OPS_TOKEN),
                                  json={"name": name}, timeout=5).json()["key"]
                    for name in ("embedder", "another"))
    mine = requests.post(site.url + "/api/jobs", headers=auth(key), timeout=5).json()["id"]
    assert read(site, JOB.format(mine), token_for(site, mine, key)["token"]).status_code == 200
    assert read(site, JOB.format(mine), token_for(site, mine, TEST_OPS_TOKEN)["token"]).ok

    other = create_job(site.url)
    for bearer in (None, another, other["controlToken"]):  # nobody, another key, another job's
        resp = requests.post(site.url + JOB.format(mine) + "/watch-token", timeout=5,
                             headers=auth(bearer) if bearer else {})
        assert resp.status_code == 404, resp.text  # as an unknown id (JOB_VISIBILITY=owner)
        assert "token" not in resp.json()
    assert requests.post(site.url + JOB.format("0" * 8 + "-0000-0000-0000-" + "0" * 12)
                         + "/watch-token", headers=auth(TEST_OPS_TOKEN), timeout=5).status_code == 404


def test_refused_tokens_read_nothing(site: Stack) -> None:
    job, other = create_job(site.url), create_job(site.url)
    good = token_for(site, job["id"], job["controlToken"])["token"]
    others = token_for(site, other["id"], other["controlToken"])["token"]
    with mock.patch("itsdangerous.timed.time.time", return_value=time.time() - 3601):
        expired = sign_watch_token(TEST_SECRET_KEY, job["id"])
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    forged = sign_watch_token("not-the-secret-key", job["id"])
    for name, token in {"none": None, "expired": expired, "other job's": others,
                        "tampered": tampered, "forged": forged,
                        "control token of another job": other["controlToken"]}.items():
        for path in (JOB.format(job["id"]), JOB.format(job["id"]) + "/log"):
            resp = read(site, path, token)
            assert resp.status_code == 404, f"{name} {path}: {resp.status_code} {resp.text}"
        with pytest.raises(socketio.exceptions.ConnectionError):  # refused at connect
            Watcher(site, job["id"], token)
    assert read(site, JOB.format(job["id"]), good).status_code == 200


def test_a_watch_token_controls_nothing(site: Stack) -> None:
    job = create_job(site.url)
    token = token_for(site, job["id"], job["controlToken"])["token"]
    for action in ("cancel", "retry", "watch-token"):
        resp = requests.post(site.url + JOB.format(job["id"]) + "/" + action,
                             headers=auth(token), timeout=5)
        assert resp.status_code == 404, f"{action}: {resp.status_code} {resp.text}"
    # Nothing was asked of the job: it runs on to its end.
    state = wait_until(lambda: (s := read(site, JOB.format(job["id"]), token).json())
                       ["state"] == "succeeded" and s, timeout=20, what="the job to succeed")
    assert "cancelRequested" not in state


def test_only_the_listed_origin_gets_cors_answers(site: Stack) -> None:
    job = create_job(site.url)
    token = token_for(site, job["id"], job["controlToken"])["token"]
    reads = [JOB.format(job["id"]), JOB.format(job["id"]) + "/log", "/api/protocol"]
    for path in reads:
        listed = read(site, path, token, Origin=EMBEDDER)
        assert listed.status_code == 200, listed.text
        assert listed.headers["Access-Control-Allow-Origin"] == EMBEDDER
        assert "Access-Control-Allow-Credentials" not in listed.headers
        assert "Origin" in listed.headers["Vary"]
        assert "Access-Control-Allow-Origin" not in read(site, path, token, Origin=STRANGER).headers
        preflight = requests.options(site.url + path, timeout=5, headers={
            "Origin": EMBEDDER, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.headers["Access-Control-Allow-Origin"] == EMBEDDER
        assert preflight.headers["Access-Control-Allow-Headers"] == "Authorization"
        refused = requests.options(site.url + path, timeout=5, headers={
            "Origin": STRANGER, "Access-Control-Request-Method": "GET"})
        assert "Access-Control-Allow-Origin" not in refused.headers
    for script in ("/static/jobcast-progress.js", "/static/vendor/socket.io.min.js"):
        listed = read(site, script, Origin=EMBEDDER)
        assert listed.headers["Access-Control-Allow-Origin"] == EMBEDDER
        assert listed.headers["Cross-Origin-Resource-Policy"] == "same-origin"
        assert "Access-Control-Allow-Origin" not in read(site, script, Origin=STRANGER).headers
    # Other routes answer no origin, listed or not; nor may a listed origin post.
    assert "Access-Control-Allow-Origin" not in read(site, "/api/kinds", Origin=EMBEDDER).headers
    post = requests.post(site.url + "/api/jobs", headers={"Origin": EMBEDDER}, timeout=5)
    assert post.status_code == 403 and "Access-Control-Allow-Origin" not in post.headers


def handshake(site: Stack, origin: str | None) -> requests.Response:
    headers = {"Origin": origin} if origin else {}
    return requests.get(site.url + "/socket.io/", params={"EIO": "4", "transport": "polling",
                                                          "watch": "1"},
                        headers=headers, timeout=5)


def test_socketio_answers_the_listed_and_own_origins_only(site: Stack) -> None:
    listed = handshake(site, EMBEDDER)
    assert listed.status_code == 200 and listed.headers["Access-Control-Allow-Origin"] == EMBEDDER
    assert "Access-Control-Allow-Credentials" not in listed.headers
    own = handshake(site, site.url)
    assert own.status_code == 200, own.text  # the site's own pages keep working
    assert handshake(site, None).status_code == 200  # programs send no Origin
    refused = handshake(site, STRANGER)
    assert refused.status_code == 400 and "Access-Control-Allow-Origin" not in refused.headers
    with pytest.raises(socketio.exceptions.ConnectionError):
        client = socketio.Client(reconnection=False)
        client.connect(site.url, headers={"Origin": STRANGER}, transports=["polling"],
                       wait_timeout=5)


def test_a_listed_origins_socket_does_not_watch_as_the_visitors_session(site: Stack) -> None:
    """A same-site embedding page's WebSocket carries the visitor's cookie: it counts for
    nothing there (the site's own pages keep it)."""
    browser = requests.Session()
    job_id = browser.post(site.url + "/api/jobs", timeout=5).json()["id"]  # the session's
    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
    own = socketio.Client(reconnection=False)
    # Long-polling: a WebSocket client adds an Origin of its own to the one given.
    own.connect(f"{site.url}?jobId={job_id}", transports=["polling"], wait_timeout=10,
                headers={"Origin": site.url, "Cookie": cookie})
    own.disconnect()
    with pytest.raises(socketio.exceptions.ConnectionError):
        socketio.Client(reconnection=False).connect(
            f"{site.url}?jobId={job_id}", transports=["polling"], wait_timeout=10,
            headers={"Origin": EMBEDDER, "Cookie": cookie})


@pytest.mark.parametrize("visibility", ["link", "owner"])
def test_a_stranger_asking_for_a_token_is_refused(config: Config, visibility: str) -> None:
    config.JOB_VISIBILITY = visibility
    app = create_app(config)
    owner, stranger = app.test_client(), app.test_client()
    job_id = owner.post("/api/jobs").get_json()["id"]
    assert owner.post(JOB.format(job_id) + "/watch-token").status_code == 201  # its session
    resp = stranger.post(JOB.format(job_id) + "/watch-token")
    assert resp.status_code == (403 if visibility == "link" else 404), resp.get_data(as_text=True)
    assert "token" not in resp.get_json()
    assert stranger.post(JOB.format("nope") + "/watch-token").status_code == 404
    cross = owner.post(JOB.format(job_id) + "/watch-token", headers={"Origin": EMBEDDER})
    assert cross.status_code == 403  # asked server-side, never by a page of another site

