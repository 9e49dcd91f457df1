"""Fixtures: a real Redis per session, the app on it, and a real running stack."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient

from shared.config import Config
from tests.support import (
    TEST_OPS_TOKEN,
    TEST_PROGRESS_TOKEN,
    TEST_SECRET_KEY,
    TEST_WORKER_TOKEN,
    Process,
    RedisServer,
    auth,
    free_port,
    job_state,
    stack_env,
    start_job,
    start_web,
    start_worker,
)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the logs of the processes started by tests go."""
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def redis_server(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real Redis for the unit-level tests (flushed around each test)."""
    server = RedisServer(log_dir, tmp_path_factory.mktemp("redis-data")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """URL of a freshly flushed Redis database."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield redis_server.url
    client.flushall()
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A str-decoding client on the flushed database."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def config(redis_url: str) -> Config:
    """Config for an in-process app, independent of the caller's environment."""
    return Config(environ={}, SECRET_KEY=TEST_SECRET_KEY, PROGRESS_TOKEN=TEST_PROGRESS_TOKEN,
                  WORKER_TOKEN=TEST_WORKER_TOKEN, REDIS_URL=redis_url, ASYNC_MODE="threading",
                  OPS_TOKEN=TEST_OPS_TOKEN)


@pytest.fixture
def app(config: Config) -> Flask:
    """The site, bound to the test Redis."""
    application = __import__("website").create_app(config)
    application.config["TESTING"] = True
    return application  # type: ignore[no-any-return]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Flask test client."""
    return app.test_client()


@dataclass
class Stack:
    """A running Redis + gunicorn site + RQ worker, all real processes."""

    redis: RedisServer
    web: Process
    worker: Process
    env: dict[str, str]
    log_dir: Path

    @property
    def url(self) -> str:
        """Base URL of the site."""
        return self.env["SITE_URL"]

    def start_job(self) -> str:
        """Start a demo job through the JSON API; its id."""
        return start_job(self.url)

    def job_state(self, job_id: str) -> dict[str, Any]:
        """The job's state from the JSON API."""
        return job_state(self.url, job_id)

    def report(self, body: dict[str, Any], token: str = TEST_PROGRESS_TOKEN) -> requests.Response:
        """POST to the progress callback."""
        return requests.post(self.url + "/api/progress", json=body, headers=auth(token),
                             timeout=5)


def start_stack(log_dir: Path, data_dir: Path, **env: str) -> Stack:
    """Start Redis, web and worker; the caller stops them with ``stop_stack``."""
    server = RedisServer(log_dir, data_dir, appendonly=True).start()
    environment = stack_env(server.url, free_port(), **env)
    web = worker = None
    try:
        web = start_web(environment, log_dir)
        worker = start_worker(environment, log_dir)
    except Exception:
        for proc in (web, worker, server):
            if proc is not None:
                proc.stop()
        raise
    return Stack(server, web, worker, environment, log_dir)


def stop_stack(stack: Stack) -> None:
    """Stop every process of ``stack``."""
    for proc in (stack.worker, stack.web, stack.redis):
        proc.stop()


@pytest.fixture(scope="module")
def stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A real stack shared by the tests of one module."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("stack-redis"))
    yield running
    stop_stack(running)


def pytest_report_header(config: pytest.Config) -> str:
    """Say which redis-server binary the tests use."""
    from dev.redis_server import find_redis_server

    browser = os.environ.get("REQUIRE_BROWSER", "")
    return f"redis-server: {find_redis_server()}; REQUIRE_BROWSER={browser}"
