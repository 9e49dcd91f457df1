"""Site protections on the app over a real Redis: CSRF, cross-site API refusal,
security headers, rate limits, configuration errors."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue

from shared.config import Config, ConfigError, parse_rate
from shared.protocol import new_id
from shared.rqconf import SERIALIZER
from tests.support import (
    TEST_PROGRESS_TOKEN,
    TEST_SECRET_KEY,
    UNSTORED,
    assert_security_headers,
    auth,
    csrf_token_in,
)
from website import create_app
from website.http.ratelimit import limit


def queued(app: Flask, redis_url: str) -> int:
    return Queue(app.config["QUEUE_NAME"], connection=redis.Redis.from_url(redis_url),
                 serializer=SERIALIZER).count


# -- CSRF -------------------------------------------------------------------------


@pytest.mark.parametrize("data", [{}, {"csrf_token": "forged"}, {"csrf_token": ""}])
def test_form_post_without_valid_csrf_token_is_400_html_and_does_nothing(
        client: FlaskClient, app: Flask, redis_url: str, data: dict[str, str]) -> None:
    client.get("/")  # a session exists, so only the token is wrong
    resp = client.post("/jobs", data=data, headers={"Accept": "text/html"})
    assert resp.status_code == 400
    assert resp.mimetype == "text/html" and b"CSRF token" in resp.data
    assert queued(app, redis_url) == 0


def test_csrf_token_from_another_session_is_refused(app: Flask, redis_url: str) -> None:
    token = csrf_token_in(app.test_client().get("/").data)
    other = app.test_client()
    other.get("/")
    assert other.post("/jobs", data={"csrf_token": token}).status_code == 400
    assert queued(app, redis_url) == 0


def test_form_post_with_token_works_and_header_token_works(client: FlaskClient, app: Flask,
                                                           redis_url: str) -> None:
    token = csrf_token_in(client.get("/").data)
    assert client.post("/jobs", data={"csrf_token": token}).status_code == 303
    assert client.post("/jobs", headers={"X-CSRFToken": token}).status_code == 303
    assert queued(app, redis_url) == 2


def test_api_needs_no_csrf_token_but_refuses_cross_site_browsers(client: FlaskClient) -> None:
    assert client.post("/api/jobs").status_code == 202
    same = client.post("/api/jobs", headers={"Origin": "http://localhost"})
    assert same.status_code == 202
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"}):
        resp = client.post("/api/jobs", headers=headers)
        assert resp.status_code == 403, headers
        assert "cross-site" in resp.get_json()["error"]


def test_cross_site_callback_is_refused_and_changes_nothing(client: FlaskClient) -> None:
    job_id = client.post("/api/jobs").get_json()["id"]
    resp = client.post("/api/progress", json={"jobId": job_id, "progress": 50, "state": "running"},
                       headers={**auth(), "Origin": "https://evil.example"})
    assert resp.status_code == 403
    assert client.get(f"/api/jobs/{job_id}").get_json()["progress"] == 0


# -- security headers --------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/api/jobs/nope", "/jobs/" + UNSTORED,
                                  "/static/js/job.js", "/api/openapi.json", "/no/such/page"])
def test_security_headers_on_every_response(client: FlaskClient, path: str) -> None:
    assert_security_headers(client.get(path).headers)


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [
    ("POST", "/api/jobs", {}, 202),
    ("POST", "/api/progress", {"json": {}}, 401),
    ("POST", "/api/progress", {"data": "{", "headers": auth()}, 400),
    ("POST", "/jobs", {"data": {}, "headers": {"Accept": "text/html"}}, 400),
    ("POST", "/api/jobs", {"headers": {"Origin": "https://evil.example"}}, 403),
    ("DELETE", "/api/jobs", {}, 405),
    ("GET", "/socket.io/?EIO=4&transport=polling", {}, 200),  # engine.io, not Flask
    ("GET", "/socket.io/?EIO=4&transport=polling&sid=nope", {}, 400),
])
def test_security_headers_on_posts_errors_and_socketio(
        client: FlaskClient, method: str, path: str, kwargs: dict[str, Any],
        status: int) -> None:
    resp = client.open(path, method=method, **kwargs)
    assert resp.status_code == status, resp.data
    assert_security_headers(resp.headers)


def test_security_headers_on_500_and_503(config: Config) -> None:
    app = create_app(config)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer like production, not re-raise

    def boom() -> str:
        raise RuntimeError("bug")

    app.add_url_rule("/boom", view_func=boom)
    resp = app.test_client().get("/boom")
    assert resp.status_code == 500
    assert_security_headers(resp.headers)
    down = create_app(Config(environ={}, SECRET_KEY=TEST_SECRET_KEY, WORKER_TOKEN="w",
                             PROGRESS_TOKEN=TEST_PROGRESS_TOKEN, ASYNC_MODE="threading",
                             REDIS_URL="redis://127.0.0.1:1/0"))
    resp = down.test_client().get("/api/jobs/" + new_id())
    assert resp.status_code == 503
    assert_security_headers(resp.headers)


def test_security_headers_on_the_connection_caps_503(config: Config) -> None:
    app = create_app(Config(environ={}, **{**config.as_dict(), "WORKER_CONNECTIONS": 20,
                                           "SOCKETIO_MAX_CONNECTIONS": 1}))
    client = app.test_client()
    first = client.get("/socket.io/?EIO=4&transport=polling")
    assert first.status_code == 200
    refused = client.get("/socket.io/?EIO=4&transport=polling")
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert_security_headers(refused.headers)


def test_views_may_set_their_own_header(config: Config) -> None:
    app = create_app(config)
    app.add_url_rule("/framed", view_func=lambda: ("ok", 200, {"X-Frame-Options": "SAMEORIGIN"}))
    resp = app.test_client().get("/framed", headers={"Host": "localhost:8080"})
    assert resp.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert_security_headers({**resp.headers, "X-Frame-Options": "DENY"}, "localhost:8080")


def test_pages_have_no_inline_script(client: FlaskClient) -> None:
    job_id = client.post("/api/jobs").get_json()["id"]
    for path in ("/", f"/jobs/{job_id}", "/jobs/" + new_id()):
        html = client.get(path, headers={"Accept": "text/html"}).data.decode()
        for attrs, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S):
            if 'type="application/json"' in attrs:  # a data block: never executed
                json.loads(body)
                continue
            assert 'src="' in attrs and body.strip() == "", (path, attrs, body)
        assert not re.search(r"\son[a-z]+\s*=", html), path
        assert "javascript:" not in html


# -- rate limit --------------------------------------------------------------------


def limited_app(redis_url: str, rate: str) -> Flask:
    cfg = Config(environ={}, SECRET_KEY=TEST_SECRET_KEY, PROGRESS_TOKEN=TEST_PROGRESS_TOKEN,
                 WORKER_TOKEN="w", REDIS_URL=redis_url, ASYNC_MODE="threading", RATE_LIMIT=rate)
    return create_app(cfg)


def test_job_creation_is_rate_limited_per_client_with_429(redis_url: str) -> None:
    app = limited_app(redis_url, "3/1000000")  # one long window: no reset mid-test
    client = app.test_client()
    assert [client.post("/api/jobs").status_code for _ in range(3)] == [202] * 3
    over = client.post("/api/jobs")
    assert over.status_code == 429
    assert "Too many requests" in over.get_json()["error"]
    assert 1 <= int(over.headers["Retry-After"]) <= 1_000_000
    # the page form shares the budget, and answers with an HTML page
    token = csrf_token_in(client.get("/").data)
    page = client.post("/jobs", data={"csrf_token": token}, headers={"Accept": "text/html"})
    assert page.status_code == 429 and page.mimetype == "text/html"
    assert b"Too many requests" in page.data and "Retry-After" in page.headers
    # another client has its own budget
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    assert other.post("/api/jobs").status_code == 202
    # reading is never limited
    assert client.get("/api/jobs/" + new_id()).status_code == 404


def test_rate_limit_is_shared_by_processes_through_redis(redis_url: str) -> None:
    first = limited_app(redis_url, "2/1000000").test_client()
    second = limited_app(redis_url, "2/1000000").test_client()
    assert first.post("/api/jobs").status_code == 202
    assert second.post("/api/jobs").status_code == 202
    assert first.post("/api/jobs").status_code == 429
    assert second.post("/api/jobs").status_code == 429


def test_rate_limit_zero_disables(redis_url: str) -> None:
    client = limited_app(redis_url, "0").test_client()
    assert {client.post("/api/jobs").status_code for _ in range(40)} == {202}


def test_rate_limit_for_later_routes(redis_url: str) -> None:
    app = limited_app(redis_url, "1/1000000")

    @app.post("/api/things")
    def make_thing() -> tuple[dict[str, Any], int]:
        return {"ok": True}, 201

    limit(app, "things", "make_thing")

    client = app.test_client()
    assert client.post("/api/things").status_code == 201
    assert client.post("/api/things").status_code == 429
    assert client.post("/api/jobs").status_code == 202  # another scope


# -- configuration -----------------------------------------------------------------


@pytest.mark.parametrize("env", [{}, {"SECRET_KEY": "x"}, {"PROGRESS_TOKEN": "y"},
                                 {"SECRET_KEY": "", "PROGRESS_TOKEN": ""},
                                 {"SECRET_KEY": "x", "PROGRESS_TOKEN": "y"}])
def test_secrets_are_required_outside_development(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="must be set in the environment"):
        Config(environ=env)


def test_development_has_dev_only_defaults() -> None:
    cfg = Config(environ={"JOBCAST_ENV": "development"})
    assert cfg.SECRET_KEY and cfg.PROGRESS_TOKEN and cfg.WORKER_TOKEN and cfg.is_development


@pytest.mark.parametrize("env, match", [
    ({"RATE_LIMIT": "lots"}, "RATE_LIMIT"), ({"RATE_LIMIT": "5/0"}, "RATE_LIMIT"),
    ({"ABANDONED_AFTER": "1"}, "ABANDONED_AFTER"), ({"ABANDONED_AFTER": "x"}, "ABANDONED_AFTER"),
    ({"JOBCAST_ENV": "staging"}, "JOBCAST_ENV"),
])
def test_invalid_settings_are_clear_errors(env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Config(environ={"SECRET_KEY": "s", "PROGRESS_TOKEN": "t", "WORKER_TOKEN": "w", **env})


@pytest.mark.parametrize("text, expected", [
    ("30/minute", (30, 60)), ("5/second", (5, 1)), ("100/hours", (100, 3600)),
    ("10/60", (10, 60)), ("0", (0, 0)), ("off", (0, 0)),
])
def test_parse_rate(text: str, expected: tuple[int, int]) -> None:
    assert parse_rate(text) == expected
