"""HTTP API and pages on the app (Flask test client) over a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue

from shared.protocol import CALLBACK_MAX_BYTES, RUN_KIND_JOB, new_id
from shared.rqconf import SERIALIZER
from shared.signing import sign_job_token
from tests.support import TEST_SECRET_KEY, UNSTORED, auth, csrf_token_in


def new_job(client: FlaskClient) -> str:
    resp = client.post("/api/jobs")
    assert resp.status_code == 202
    return str(resp.get_json()["id"])


def report(client: FlaskClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    return client.post("/api/progress", json=body, headers=auth() if headers is None else headers)


def test_home_page_has_start_button(client: FlaskClient) -> None:
    resp = client.get("/")
    assert resp.status_code == 200 and b"Start a new job" in resp.data


def test_post_jobs_redirects_to_status_page_and_enqueues(client: FlaskClient, redis_url: str,
                                                         app: Flask) -> None:
    token = csrf_token_in(client.get("/").data)
    resp = client.post("/jobs", data={"csrf_token": token})
    assert resp.status_code == 303
    job_id = resp.headers["Location"].rsplit("/", 1)[1]
    page = client.get(f"/jobs/{job_id}")
    assert page.status_code == 200
    assert f"Status for job {job_id}".encode() in page.data
    assert b'id="progress-span"' in page.data
    queue = Queue(app.config["QUEUE_NAME"], connection=redis.Redis.from_url(redis_url), serializer=SERIALIZER)
    job = queue.fetch_job(job_id)
    assert job is not None and job.func_name == RUN_KIND_JOB and list(job.args) == [job_id]
    assert job.kwargs["kind_name"] == "demo" and job.kwargs["kind_args"] == {"steps": 10}


def test_api_create_and_read_state(client: FlaskClient) -> None:
    resp = client.post("/api/jobs")
    body = resp.get_json()
    assert resp.status_code == 202
    assert set(body) == {"id", "kind", "status_url", "state", "controlToken", "owner"}
    assert body["state"] == {"jobId": body["id"], "progress": 0, "state": "queued", "message": ""}
    state = client.get(body["status_url"])
    assert state.status_code == 200 and state.get_json()["state"] == "queued"


@pytest.mark.parametrize("path", ["/api/jobs/" + "0" * 36, "/api/jobs/nope", "/api/jobs/" + UNSTORED])
def test_unknown_job_is_404_json(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 404 and "error" in resp.get_json()


def test_unknown_job_page_is_404_html(client: FlaskClient) -> None:
    resp = client.get("/jobs/" + new_id(), headers={"Accept": "text/html"})
    assert resp.status_code == 404 and b"There is no job" in resp.data


def test_callback_applies_update(client: FlaskClient) -> None:
    job_id = new_job(client)
    resp = report(client, {"jobId": job_id, "progress": 30, "state": "running", "message": "m"})
    assert resp.status_code == 204
    assert client.get(f"/api/jobs/{job_id}").get_json() == {
        "jobId": job_id, "progress": 30, "state": "running", "message": "m"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic x"}, {"Authorization": "Bearer "}])
def test_callback_without_or_with_wrong_token_is_401_and_changes_nothing(
        client: FlaskClient, headers: dict[str, str]) -> None:
    job_id = new_job(client)
    resp = report(client, {"jobId": job_id, "progress": 50, "state": "running"}, headers)
    assert resp.status_code == 401 and "error" in resp.get_json()
    assert client.get(f"/api/jobs/{job_id}").get_json()["progress"] == 0


def test_per_job_token_reports_only_its_job(client: FlaskClient) -> None:
    mine, other = new_job(client), new_job(client)
    token = sign_job_token(TEST_SECRET_KEY, mine)
    headers = {"Authorization": f"Bearer {token}"}
    assert report(client, {"jobId": mine, "progress": 10, "state": "running"}, headers).status_code == 204
    assert report(client, {"jobId": other, "progress": 10, "state": "running"}, headers).status_code == 401
    assert client.get(f"/api/jobs/{other}").get_json()["progress"] == 0


@pytest.mark.parametrize("changes", [
    {"progress": "abc"}, {"progress": -1}, {"progress": 101}, {"progress": None},
    {"state": "bogus"}, {"jobId": "123"},
])
def test_bad_payloads_are_400_json(client: FlaskClient, changes: dict[str, Any]) -> None:
    job_id = new_job(client)
    body = {"jobId": job_id, "progress": 10, "state": "running", **changes}
    resp = report(client, body)
    assert resp.status_code == 400 and resp.get_json()["error"]
    assert client.get(f"/api/jobs/{job_id}").get_json()["progress"] == 0


@pytest.mark.parametrize("missing", ["progress", "state"])
def test_missing_fields_are_400(client: FlaskClient, missing: str) -> None:
    job_id = new_job(client)
    body = {"jobId": job_id, "progress": 10, "state": "running"}
    del body[missing]
    resp = report(client, body)
    assert resp.status_code == 400 and missing in resp.get_json()["error"]


@pytest.mark.parametrize("data", [b"not json", b"{", b"[1, 2]", b'"x"', b""])
def test_non_json_is_400(client: FlaskClient, data: bytes) -> None:
    resp = client.post("/api/progress", data=data, headers={**auth(), "Content-Type": "application/json"})
    assert resp.status_code == 400 and "error" in resp.get_json()


def test_unknown_job_callback_is_404(client: FlaskClient) -> None:
    resp = report(client, {"jobId": new_id(), "progress": 10, "state": "running"})
    assert resp.status_code == 404 and resp.get_json()["error"] == "unknown job id"


def test_oversized_callback_is_413(client: FlaskClient) -> None:
    job_id = new_job(client)
    resp = report(client, {"jobId": job_id, "progress": 1, "state": "running",
                           "message": "x" * (CALLBACK_MAX_BYTES + 1000)})
    assert resp.status_code == 413 and "error" in resp.get_json()
    assert client.get(f"/api/jobs/{job_id}").get_json()["progress"] == 0


def test_wrong_method_is_405_json(client: FlaskClient) -> None:
    resp = client.get("/api/progress")
    assert resp.status_code == 405 and "error" in resp.get_json()


def test_redis_down_is_503_not_500(config: Any) -> None:
    from tests.support import free_port
    from website import create_app
    config.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    broken = create_app(config).test_client()
    resp = broken.post("/api/jobs")
    assert resp.status_code == 503 and "unavailable" in resp.get_json()["error"]
