"""Rate limits (Flask-Limiter on the real test Redis): every limited endpoint
refuses with 429 past the limit and answers again once the window is over;
the client key (IPv4, IPv6 /64, X-Forwarded-For only behind trusted proxies);
the global ceiling; and ``limit()`` refusing an unknown endpoint."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from shared import keys
from shared.config import Config
from tests.support import (
    TEST_PROGRESS_TOKEN,
    TEST_SECRET_KEY,
    csrf_token_in,
    free_port,
    stack_env,
    start_web,
    wait_until,
)
from website import create_app
from website.http.ratelimit import client_key, client_network, limit

WINDOW = 2  # seconds: "3/2" is 3 requests per 2 s
RATE = f"3/{WINDOW}"
SNIPPET = {"source": "print(1)", "language": "python"}


OPS_TOKEN = "ratelimit-ops-token"


def make_app(redis_url: str, rate: str = RATE, everyone: str = "0", proxies: int = 0) -> Flask:
    """The site on the test Redis with the given per-client and global limits."""
    cfg = Config(environ={}, SECRET_KEY=TEST_SECRET_KEY, PROGRESS_TOKEN=TEST_PROGRESS_TOKEN,
                 WORKER_TOKEN="w", REDIS_URL=redis_url, ASYNC_MODE="threading", RATE_LIMIT=rate,
                 RATE_LIMIT_GLOBAL=everyone, TRUSTED_PROXIES=proxies, OPS_TOKEN=OPS_TOKEN)
    app = create_app(cfg)
    app.config["TESTING"] = True
    return app


def operator(client: FlaskClient) -> FlaskClient:
    """``client``, sending the operator's token (who may cancel and retry any job)."""
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {OPS_TOKEN}"
    return client


def unlimited_jobs(redis_url: str, count: int, cancel: bool) -> list[str]:
    """``count`` queued (or cancelled) jobs made by an app without limits, so
    that they count against no budget of the app under test."""
    client = operator(make_app(redis_url, rate="0").test_client())
    job_ids = [client.post("/api/jobs").get_json()["id"] for _ in range(count)]
    if cancel:
        for job_id in job_ids:
            assert client.post(f"/api/jobs/{job_id}/cancel").status_code == 200
    return job_ids


def assert_refused(resp: TestResponse, html: bool) -> int:
    """A 429 in the right format with a sensible Retry-After; that value."""
    assert resp.status_code == 429, resp.get_data(as_text=True)
    retry_after = int(resp.headers["Retry-After"])
    assert 1 <= retry_after <= WINDOW
    if html:
        assert resp.mimetype == "text/html"
        assert "Too many requests" in resp.get_data(as_text=True)
    else:
        assert resp.mimetype == "application/json"
        assert "Too many requests" in resp.get_json()["error"]
    return retry_after


def answers_after_window(send: Callable[[], TestResponse], ok: int) -> None:
    """Once the window is over, ``send`` is answered with ``ok`` again."""
    wait_until(lambda: send().status_code == ok, timeout=WINDOW + 3, interval=0.25,
               what=f"an answer {ok} after the {WINDOW} s window")


def token(client: FlaskClient, path: str = "/") -> str:
    """The session's CSRF token, from a page with a form."""
    return csrf_token_in(client.get(path).data)


def test_job_creation_api_and_form_share_one_budget(redis_url: str) -> None:
    client = make_app(redis_url).test_client()
    csrf = token(client)
    form = {"csrf_token": csrf}
    assert client.post("/api/jobs").status_code == 202
    assert client.post("/jobs", data=form).status_code == 303
    assert client.post("/api/jobs").status_code == 202
    assert_refused(client.post("/api/jobs"), html=False)
    assert_refused(client.post("/jobs", data=form), html=True)
    answers_after_window(lambda: client.post("/jobs", data=form), 303)
    assert client.post("/api/jobs").status_code == 202


def test_snippet_creation_api_and_form_share_one_budget(redis_url: str) -> None:
    client = make_app(redis_url).test_client()
    form = {**SNIPPET, "csrf_token": token(client, "/snippets")}
    assert client.post("/api/snippets", json=SNIPPET).status_code == 202
    assert client.post("/snippets", data=form).status_code == 303
    assert client.post("/api/snippets", json=SNIPPET).status_code == 202
    assert_refused(client.post("/api/snippets", json=SNIPPET), html=False)
    assert_refused(client.post("/snippets", data=form), html=True)
    answers_after_window(lambda: client.post("/api/snippets", json=SNIPPET), 202)
    assert client.post("/snippets", data=form).status_code == 303


def test_retry_api_and_button_are_limited(redis_url: str) -> None:
    job_ids = unlimited_jobs(redis_url, 5, cancel=True)
    client = operator(make_app(redis_url).test_client())
    form = {"csrf_token": token(client)}
    assert client.post(f"/api/jobs/{job_ids[0]}/retry").status_code == 202
    assert client.post(f"/jobs/{job_ids[1]}/retry", data=form).status_code == 303
    assert client.post(f"/api/jobs/{job_ids[2]}/retry").status_code == 202
    assert_refused(client.post(f"/api/jobs/{job_ids[3]}/retry"), html=False)
    assert_refused(client.post(f"/jobs/{job_ids[3]}/retry", data=form), html=True)
    answers_after_window(lambda: client.post(f"/api/jobs/{job_ids[3]}/retry"), 202)
    assert client.post(f"/jobs/{job_ids[4]}/retry", data=form).status_code == 303


def test_retry_shares_the_job_creation_budget(redis_url: str) -> None:
    (job_id,) = unlimited_jobs(redis_url, 1, cancel=True)
    client = operator(make_app(redis_url).test_client())
    for _ in range(3):
        assert client.post("/api/jobs").status_code == 202
    assert_refused(client.post(f"/api/jobs/{job_id}/retry"), html=False)


def test_cancel_api_and_button_are_limited(redis_url: str) -> None:
    job_ids = unlimited_jobs(redis_url, 5, cancel=False)
    client = operator(make_app(redis_url).test_client())
    form = {"csrf_token": token(client)}
    assert client.post(f"/api/jobs/{job_ids[0]}/cancel").status_code == 200
    assert client.post(f"/jobs/{job_ids[1]}/cancel", data=form).status_code == 303
    assert client.post(f"/api/jobs/{job_ids[2]}/cancel").status_code == 200
    assert_refused(client.post(f"/api/jobs/{job_ids[3]}/cancel"), html=False)
    assert_refused(client.post(f"/jobs/{job_ids[3]}/cancel", data=form), html=True)
    answers_after_window(lambda: client.post(f"/api/jobs/{job_ids[3]}/cancel"), 200)
    assert client.post(f"/jobs/{job_ids[4]}/cancel", data=form).status_code == 303
    # cancelling has its own budget: creating jobs is still allowed
    assert client.post("/api/jobs").status_code == 202


def test_the_global_ceiling_counts_all_clients_together(redis_url: str) -> None:
    app = make_app(redis_url, rate="100/60", everyone=RATE)
    codes = []
    for n in range(4):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"10.0.0.{n + 1}"
        codes.append(client.post("/api/jobs").status_code)
    assert codes == [202, 202, 202, 429]
    fresh = app.test_client()
    fresh.environ_base["REMOTE_ADDR"] = "10.0.0.99"
    over = fresh.post("/api/jobs")
    assert_refused(over, html=False)
    assert "all clients together" in over.get_json()["error"]
    answers_after_window(lambda: fresh.post("/api/jobs"), 202)


def test_counters_live_under_the_volatile_prefix(redis_url: str, redis_client: redis.Redis
                                                 ) -> None:
    client = make_app(redis_url, everyone="600/minute").test_client()
    assert client.post("/api/jobs").status_code == 202
    counters = redis_client.keys(f"{keys.RATE_LIMIT_PREFIX}:*")
    assert len(counters) == 2, counters  # this client's, and all clients' together
    assert all("jobs" in key for key in counters)


def test_a_limited_route_answers_503_when_redis_is_down() -> None:
    app = make_app(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    resp = app.test_client().post("/api/jobs")
    assert resp.status_code == 503 and "unavailable" in resp.get_json()["error"]


def test_limit_refuses_an_unknown_endpoint(redis_url: str) -> None:
    app = make_app(redis_url)
    with pytest.raises(ValueError, match="jobs.no_such_view"):
        limit(app, "jobs", "api.create_job", "jobs.no_such_view")


# -- who is a client ---------------------------------------------------------------


@pytest.mark.parametrize("address, key", [
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("fe80::1%eth0", "fe80::/64"),
    ("", "unknown"),
    (None, "unknown"),
    ("not-an-address", "not-an-address"),
])
def test_client_network(address: str | None, key: str) -> None:
    assert client_network(address) == key


def key_seen(app: Flask, peer: str, forwarded: str | None = None) -> str:
    """``client_key()`` for a request from ``peer`` through the app's WSGI stack."""
    @app.get("/test/key")
    def show_key() -> str:
        return client_key()

    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return app.test_client().get("/test/key", headers=headers,
                                 environ_base={"REMOTE_ADDR": peer}).get_data(as_text=True)


def test_forwarded_for_is_ignored_without_trusted_proxies(redis_url: str) -> None:
    app = make_app(redis_url)
    assert key_seen(app, "192.0.2.7", forwarded="198.51.100.1") == "192.0.2.7"


def test_forwarded_for_names_the_client_behind_a_trusted_proxy(redis_url: str) -> None:
    app = make_app(redis_url, proxies=1)
    assert key_seen(app, "127.0.0.1", forwarded="198.51.100.1") == "198.51.100.1"


def test_only_the_trusted_number_of_hops_is_believed(redis_url: str) -> None:
    app = make_app(redis_url, proxies=1)  # a client cannot pick its key by sending the header
    assert key_seen(app, "127.0.0.1", forwarded="203.0.113.5, 198.51.100.1") == "198.51.100.1"


def test_ipv6_client_behind_a_proxy_is_keyed_by_its_64(redis_url: str) -> None:
    app = make_app(redis_url, proxies=1)
    assert key_seen(app, "127.0.0.1", forwarded="2001:db8:5:6:7::8") == "2001:db8:5:6::/64"


def test_addresses_of_one_ipv6_64_share_a_budget(redis_url: str) -> None:
    app = make_app(redis_url)
    codes = []
    for suffix in ("1", "2", "3", "4"):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"2001:db8:9:9::{suffix}"
        codes.append(client.post("/api/jobs").status_code)
    assert codes == [202, 202, 202, 429]
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "2001:db8:9:a::1"  # the next /64
    assert other.post("/api/jobs").status_code == 202


# -- in the real web server ----------------------------------------------------------


@pytest.mark.parametrize("mode", ["eventlet", "gevent"])
def test_limits_hold_for_concurrent_requests_in_two_gunicorn_processes(
        mode: str, redis_url: str, log_dir: Path) -> None:
    """Flask-Limiter's Redis storage under green threads: of 8 simultaneous
    creations spread over two web processes, exactly 3 pass (a 6 s window, so
    that a slow machine cannot let the window end amid the burst)."""
    window = 6
    webs = []
    try:
        for name in ("a", "b"):
            env = stack_env(redis_url, free_port(), ASYNC_MODE=mode, RATE_LIMIT=f"3/{window}",
                            RATE_LIMIT_GLOBAL="0")
            webs.append((start_web(env, log_dir, name=f"web-limits-{mode}-{name}"),
                         env["SITE_URL"]))
        urls = [url for _, url in webs] * 4
        with ThreadPoolExecutor(len(urls)) as pool:
            codes = list(pool.map(
                lambda url: requests.post(url + "/api/jobs", timeout=10).status_code, urls))
        assert sorted(codes) == [202] * 3 + [429] * 5, codes
        wait_until(lambda: requests.post(urls[0] + "/api/jobs", timeout=5).status_code == 202,
                   timeout=window + 3, interval=0.25, what="a job accepted after the window")
    finally:
        for web, _ in webs:
            web.stop()
