"""The web process's Redis pool: a request that finds every connection taken waits
for one (up to ``REDIS_POOL_TIMEOUT``) instead of failing, then answers 503."""

from __future__ import annotations

import threading

import redis
from flask import Flask

from shared.config import Config
from shared.protocol import new_id
from tests.conftest import (
    TEST_OPS_TOKEN,
    TEST_PROGRESS_TOKEN,
    TEST_SECRET_KEY,
    TEST_WORKER_TOKEN,
)
from tests.support import wait_until
from website import create_app
from website.extensions import core


def pool_app(redis_url: str, size: int, timeout: float) -> Flask:
    """An in-process site whose pools hold ``size`` connections each."""
    cfg = Config(environ={"REDIS_POOL_SIZE": str(size), "REDIS_POOL_TIMEOUT": str(timeout)},
                 SECRET_KEY=TEST_SECRET_KEY, PROGRESS_TOKEN=TEST_PROGRESS_TOKEN,
                 WORKER_TOKEN=TEST_WORKER_TOKEN, REDIS_URL=redis_url, ASYNC_MODE="threading",
                 OPS_TOKEN=TEST_OPS_TOKEN)
    app = create_app(cfg)
    app.config["TESTING"] = True
    return app


def taken(app: Flask) -> tuple[redis.BlockingConnectionPool, list[redis.Connection]]:
    """Take every connection of the app's text pool (the job store's)."""
    with app.app_context():
        pool = core.client.connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool)
    return pool, [pool.get_connection() for _ in range(pool.max_connections)]


def test_a_request_waits_for_a_free_connection(redis_url: str) -> None:
    app = pool_app(redis_url, size=2, timeout=10)
    job_id = new_id()
    with app.app_context():
        core.store.create(job_id, kind="demo")
    pool, held = taken(app)
    answers: list[int] = []
    waiting = threading.Thread(target=lambda: answers.append(
        app.test_client().get(f"/api/jobs/{job_id}").status_code))
    waiting.start()
    try:
        waiting.join(0.5)
        assert waiting.is_alive() and not answers  # it waits: no 503 at once
        pool.release(held.pop())
        wait_until(lambda: answers, timeout=5, what="the waiting request's answer")
    finally:
        for conn in held:
            pool.release(conn)
        waiting.join(5)
    assert answers == [200]


def test_past_the_timeout_the_answer_is_503_json(redis_url: str) -> None:
    app = pool_app(redis_url, size=2, timeout=0.2)
    pool, held = taken(app)
    try:
        resp = app.test_client().get(f"/api/jobs/{new_id()}")
    finally:
        for conn in held:
            pool.release(conn)
    assert resp.status_code == 503 and resp.is_json, resp.data
