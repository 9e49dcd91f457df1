"""The progress callback's guarantees through the HTTP API (app over a real Redis):
per-job tokens, sequence and monotonic rules, terminal states, limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import URLSafeSerializer
from rq import Queue

from shared.protocol import MESSAGE_MAX
from shared.rqconf import SERIALIZER
from shared.signing import sign_job_token
from tests.support import TEST_SECRET_KEY, auth, free_port


def new_job(client: FlaskClient) -> str:
    return str(client.post("/api/jobs").get_json()["id"])


def send(client: FlaskClient, job_id: str, token: str | None = None, **body: Any) -> Any:
    headers = auth(token) if token else auth()
    return client.post("/api/progress", json={"jobId": job_id, "state": "running", **body},
                       headers=headers)


def state(client: FlaskClient, job_id: str) -> dict[str, Any]:
    return client.get(f"/api/jobs/{job_id}").get_json()  # type: ignore[no-any-return]


def test_enqueued_job_gets_a_token_for_itself_only(client: FlaskClient, app: Flask,
                                                   redis_url: str) -> None:
    job_id = new_job(client)
    job = Queue(app.config["QUEUE_NAME"], connection=redis.Redis.from_url(redis_url),
                serializer=SERIALIZER).fetch_job(job_id)
    assert job is not None
    token = job.kwargs["token"]
    assert token != app.config["PROGRESS_TOKEN"]
    assert send(client, job_id, token, progress=10).status_code == 204
    assert send(client, new_job(client), token, progress=10).status_code == 401


def tampered(token: str) -> str:
    """``token`` with one character of its signature changed. Not the last ones: the
    last base64 character carries padding bits, so "...xx" can decode to the same
    signature (1 run in a few hundred)."""
    i = len(token) - 5
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]


@pytest.mark.parametrize("make_token", [
    lambda job_id: sign_job_token("another-secret", job_id),  # signed elsewhere
    lambda job_id: tampered(sign_job_token(TEST_SECRET_KEY, job_id)),
    lambda job_id: URLSafeSerializer(TEST_SECRET_KEY).dumps(job_id),  # other salt
    lambda job_id: sign_job_token(TEST_SECRET_KEY, job_id.upper()),  # not this exact id
    lambda job_id: "x" * 5000,
])
def test_forged_job_tokens_are_401_and_change_nothing(client: FlaskClient,
                                                      make_token: Any) -> None:
    job_id = new_job(client)
    resp = send(client, job_id, make_token(job_id), progress=50)
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid token"
    assert state(client, job_id)["progress"] == 0


def test_shared_token_may_report_any_job(client: FlaskClient) -> None:
    for job_id in (new_job(client), new_job(client)):
        assert send(client, job_id, progress=5).status_code == 204


def test_sequence_duplicates_and_late_updates_are_dropped(client: FlaskClient) -> None:
    job_id = new_job(client)
    applied = [send(client, job_id, progress=p, seq=s).headers["X-Jobcast-Applied"]
               for p, s in ((20, 2), (20, 2), (10, 1), (30, 3), (25, 4), (25, 5))]
    # (25, 4) changes nothing (progress stays 30): dropped too; seq 5 moves the message
    applied[-1] = send(client, job_id, progress=25, seq=6, message="m").headers[
        "X-Jobcast-Applied"]
    assert applied == ["1", "0", "0", "1", "0", "1"]
    assert state(client, job_id)["progress"] == 30  # a late lower value never moves it back


@pytest.mark.parametrize("end", ["succeeded", "failed", "cancelled"])
def test_terminal_state_is_final(client: FlaskClient, end: str) -> None:
    job_id = new_job(client)
    send(client, job_id, progress=40)
    assert send(client, job_id, progress=40, state=end).headers["X-Jobcast-Applied"] == "1"
    final = state(client, job_id)
    for body in ({"progress": 90}, {"progress": 100, "state": "succeeded"},
                 {"progress": 0, "state": "failed"}, {"progress": 50, "seq": 10**15}):
        resp = send(client, job_id, **body)
        assert resp.status_code == 204 and resp.headers["X-Jobcast-Applied"] == "0"
    assert state(client, job_id) == final


def test_message_is_capped_and_non_uuid_ids_refused(client: FlaskClient) -> None:
    job_id = new_job(client)
    assert send(client, job_id, progress=1, message="m" * 5000).status_code == 204
    assert state(client, job_id)["message"] == "m" * MESSAGE_MAX
    own_token = sign_job_token(TEST_SECRET_KEY, job_id)
    for bad in ("1", job_id + "0", "../" + job_id[3:], job_id.replace("-", "")):
        resp = send(client, bad, progress=1)  # the shared token may report any id: 400
        assert resp.status_code == 400 and "jobId" in resp.get_json()["error"], resp.data
        # A per-job token cannot match another id: 401 before the body is judged.
        assert send(client, bad, token=own_token, progress=1).status_code == 401
    assert client.get("/api/jobs/" + job_id.replace("-", "")).status_code == 404


@pytest.mark.parametrize("data", [b"[" * 10_000, b'{"a":' * 3000, b"\xff\xfe\x00", b"NaN",
                                  b'{"jobId": "\\ud800", "progress": 1, "state": "running"}'])
def test_hostile_json_is_400_not_500(client: FlaskClient, data: bytes) -> None:
    resp = client.post("/api/progress", data=data,
                       headers={**auth(), "Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["error"]


@pytest.mark.parametrize("field", ["message", "stage"])
def test_lone_surrogates_are_400_and_change_nothing(client: FlaskClient, field: str) -> None:
    job_id = new_job(client)
    data = (f'{{"jobId": "{job_id}", "progress": 5, "state": "running", '
            f'"{field}": "a\\udfffb"}}').encode()
    resp = client.post("/api/progress", data=data,
                       headers={**auth(), "Content-Type": "application/json"})
    assert resp.status_code == 400
    assert state(client, job_id)["progress"] == 0


@pytest.mark.parametrize("encode", [
    # the surrogate as raw UTF-8 bytes (json.loads lets them through)...
    lambda text: text.replace("\\udfff", "\udfff").encode("utf-8", "surrogatepass"),
    # ...and in UTF-16 text (json.loads detects the encoding)
    lambda text: text.replace("\\udfff", "\udfff").encode("utf-16-le", "surrogatepass"),
], ids=["utf-8 bytes", "utf-16"])
def test_lone_surrogates_without_escapes_are_400_and_change_nothing(
        client: FlaskClient, encode: Callable[[str], bytes]) -> None:
    job_id = new_job(client)
    data = encode(f'{{"jobId": "{job_id}", "progress": 5, "state": "running", '
                  f'"message": "a\\udfffb"}}')
    assert b"\\u" not in data
    resp = client.post("/api/progress", data=data,
                       headers={**auth(), "Content-Type": "application/json"})
    assert resp.status_code == 400
    assert state(client, job_id)["progress"] == 0


def test_snippet_with_lone_surrogate_is_400(client: FlaskClient) -> None:
    resp = client.post("/api/snippets", data=b'{"source": "x = \'\\ud800\'"}',
                       headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.get_json()["error"]


def test_enqueue_failure_leaves_no_eternal_queued_job(app: Flask, redis_url: str) -> None:
    # The job store works but the queue's Redis is unreachable.
    from rq import Queue as RQQueue

    dead = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    app.extensions["jobcast.core"].lifecycle.queue = RQQueue("jobcast", connection=dead,
                                                             serializer=SERIALIZER)
    resp = app.test_client().post("/api/jobs")
    assert resp.status_code == 503
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    ids = client.zrange("jobcast:jobs:recent", 0, -1)
    assert len(ids) == 1
    assert client.hget(f"jobcast:job:{ids[0]}", "state") == "failed"
    client.close()
