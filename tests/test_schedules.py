"""Recurring schedules: cron strings, pause/resume, each run fired once (real Redis,
and the real tick process with a real worker)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import redis
import requests
from flask import Flask
from rq import Queue

from shared import keys
from shared.config import WORKER, Config
from shared.rqconf import SERIALIZER
from shared.schedules import BadSchedule, ScheduleStore, check_cron
from shared.store import JobStore
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import (
    TEST_PROGRESS_TOKEN,
    TEST_SECRET_KEY,
    Process,
    auth,
    csrf_token_in,
    wait_until,
)
from worker.cron import Ticker

OPS_TOKEN = "schedule-ops-token"
OPS = auth(OPS_TOKEN)
MINUTE = 60.0


@pytest.fixture
def ticker(redis_url: str) -> Ticker:
    return Ticker(Config(environ={}, role=WORKER, SECRET_KEY=TEST_SECRET_KEY,
                         PROGRESS_TOKEN=TEST_PROGRESS_TOKEN, REDIS_URL=redis_url))


def test_cron_strings_are_checked() -> None:
    assert check_cron(" */5  * * * * ") == "*/5 * * * *"
    for bad in ("", "* * * *", "61 * * * *", "* * * * * *", "every minute", "0 0 31 2 *", 5, None):
        with pytest.raises(BadSchedule):
            check_cron(bad)


def test_a_run_fires_once_at_its_time_and_never_while_paused(ticker: Ticker,
                                                             redis_client: redis.Redis) -> None:
    store = ScheduleStore(redis_client)
    start = 1_900_000_020.0  # a whole minute (UTC)
    schedule = store.create("* * * * *", "demo", {"steps": 1}, now=start + 1)
    assert schedule.next_run == start + MINUTE
    assert ticker.tick(now=start + 59) == []  # not before its time
    fired = ticker.tick(now=start + MINUTE)
    assert len(fired) == 1
    other = Ticker(ticker.cfg)
    assert ticker.tick(now=start + MINUTE + 1) == [] and other.tick(now=start + MINUTE + 1) == []
    job = JobStore(redis_client).get(fired[0])
    assert job is not None and job.state == "queued" and job.owner == f"schedule:{schedule.schedule_id}"
    assert Queue("jobcast", connection=redis.Redis.from_url(ticker.cfg.REDIS_URL),
                 serializer=SERIALIZER).count == 1
    store.pause(schedule.schedule_id)
    assert ticker.tick(now=start + 10 * MINUTE) == []  # paused: nothing is due
    resumed = store.resume(schedule.schedule_id, now=start + 10 * MINUTE + 5)
    assert resumed.next_run == start + 11 * MINUTE and not resumed.paused
    assert len(ticker.tick(now=start + 11 * MINUTE)) == 1
    assert store.get(schedule.schedule_id).runs == 2
    store.delete(schedule.schedule_id)
    assert ticker.tick(now=start + 20 * MINUTE) == []


@pytest.fixture(scope="module")
def cron_site(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(log_dir, tmp_path_factory.mktemp("cron-redis"), OPS_TOKEN=OPS_TOKEN)
    ticking = Process("cron", [sys.executable, "-m", "worker.cron",
                               "--interval", "0.2"], running.env, log_dir).start()
    yield running
    ticking.stop()
    stop_stack(running)


def test_the_tick_process_fires_a_due_schedule_but_not_a_paused_one(cron_site: Stack) -> None:
    api = f"{cron_site.url}/api/schedules"
    witness = requests.post(api, json={"cron": "0 0 1 1 *", "kind": "demo",
                                       "args": {"steps": 1}}, headers=OPS, timeout=5).json()
    paused = requests.post(api, json={"cron": "0 0 1 1 *", "kind": "demo"}, headers=OPS,
                           timeout=5).json()
    assert requests.post(f"{api}/{paused['id']}/pause", headers=OPS,
                         timeout=5).json()["paused"] is True
    client = redis.Redis.from_url(cron_site.redis.url, decode_responses=True)
    # Make both due now (as if their minute had come); the paused one is not in the index.
    client.zadd(keys.SCHEDULES_DUE, {witness["id"]: time.time()})
    wait_until(lambda: client.hget(keys.schedule_key(witness["id"]), "last_job"), timeout=20,
               what="the due schedule to fire")
    job_id = client.hget(keys.schedule_key(witness["id"]), "last_job")
    wait_until(lambda: cron_site.job_state(str(job_id))["state"] == "succeeded", timeout=30,
               what="the scheduled run to finish")
    listed = {s["id"]: s for s in requests.get(api, headers=OPS, timeout=5).json()["schedules"]}
    assert listed[witness["id"]]["runs"] == 1 and listed[witness["id"]]["nextRun"].endswith("Z")
    assert datetime.fromisoformat(listed[witness["id"]]["nextRun"]).timestamp() > time.time()
    assert listed[paused["id"]]["runs"] == 0 and listed[paused["id"]]["nextRun"] is None
    page = requests.get(f"{cron_site.url}/dashboard", headers=OPS, timeout=5).text
    assert f'data-schedule-id="{paused["id"]}" data-paused="1"' in page
    assert "next run <time>" in page


def test_only_operators_manage_schedules(ops_app: Flask) -> None:
    client = ops_app.test_client()
    for method, path in (("get", "/api/schedules"), ("post", "/api/schedules"),
                         ("post", "/api/schedules/x/pause"), ("delete", "/api/schedules/x")):
        resp = getattr(client, method)(path, json={"cron": "* * * * *"}, headers=auth("wrong"))
        assert resp.status_code == 401, path
    token = csrf_token_in(client.get("/").get_data(as_text=True))
    resp = client.post("/dashboard/schedules/x/resume", data={"csrf_token": token},
                       headers=auth("wrong"))
    assert resp.status_code == 401
    assert client.post("/dashboard/schedules/x/resume", data={"csrf_token": token},
                       headers=OPS).status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"cron": "61 * * * *", "kind": "demo"}, "cron"),
    ({"cron": "* * *", "kind": "demo"}, "cron"),
    ({"kind": "demo"}, "cron"),
    ({"cron": "* * * * *", "kind": "nope"}, "kind"),
    ({"cron": "* * * * *", "kind": "bulk", "args": {"action": "retry"}}, "kind"),
    ({"cron": "* * * * *", "kind": "demo", "args": {"steps": 0}}, "steps"),
    ({"cron": "* * * * *", "kind": "demo", "args": []}, "args"),
])
def test_bad_schedules_are_400(ops_app: Flask, body: dict[str, object], field: str) -> None:
    resp = ops_app.test_client().post("/api/schedules", json=body, headers=OPS)
    assert resp.status_code == 400 and field in resp.get_json()["fields"], resp.get_json()


def test_unknown_schedules_are_404(ops_app: Flask) -> None:
    client = ops_app.test_client()
    assert client.post("/api/schedules/nope/pause", headers=OPS).status_code == 404
    assert client.delete("/api/schedules/nope", headers=OPS).status_code == 404


@pytest.fixture
def ops_app(config: Config) -> Flask:
    config.OPS_TOKEN = OPS_TOKEN
    app = __import__("website").create_app(config)
    app.config["TESTING"] = True
    return app  # type: ignore[no-any-return]
