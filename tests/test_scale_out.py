"""Scale-out with real processes: two web instances on one Socket.IO message
queue, two workers on one queue, the worker emitting straight to the queue,
and the site under gunicorn's gevent worker."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from shared.callback import ReportError
from shared.config import Config, ConfigError, default_socketio_cap
from shared.protocol import SUCCEEDED, new_id
from shared.rqconf import SERIALIZER
from shared.store import JobStore
from tests.conftest import start_stack, stop_stack
from tests.support import (
    EventRecorder,
    Process,
    RedisServer,
    auth,
    demo_final,
    final_state_received,
    free_port,
    job_state,
    stack_env,
    start_job,
    start_web,
    start_worker,
    wait_until,
)
from worker.boundary import DirectReporter, make_reporter


@dataclass
class Cluster:
    """One Redis, two web instances sharing it as their Socket.IO message queue."""

    redis: RedisServer
    env_a: dict[str, str]
    env_b: dict[str, str]
    log_dir: Path

    @property
    def url_a(self) -> str:
        """Base URL of instance A."""
        return self.env_a["SITE_URL"]

    @property
    def url_b(self) -> str:
        """Base URL of instance B."""
        return self.env_b["SITE_URL"]

    def state(self, job_id: str) -> dict[str, Any]:
        """The job's state, read through instance B."""
        return job_state(self.url_b, job_id)


@pytest.fixture(scope="module")
def cluster(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Redis + web A + web B, both with SOCKETIO_MESSAGE_QUEUE set."""
    server = RedisServer(log_dir, tmp_path_factory.mktemp("cluster-redis")).start()
    env_a = stack_env(server.url, free_port(), SOCKETIO_MESSAGE_QUEUE=server.url,
                      DEMO_STEP_DELAY="0.02")
    env_b = stack_env(server.url, free_port(), SOCKETIO_MESSAGE_QUEUE=server.url)
    procs: list[Process] = [server]
    try:
        procs.append(start_web(env_a, log_dir, name="web-a"))
        procs.append(start_web(env_b, log_dir, name="web-b"))
        yield Cluster(server, env_a, env_b, log_dir)
    finally:
        for proc in reversed(procs):
            proc.stop()


def _progress_is(value: int) -> Any:
    def check(events: list[tuple[str, Any]]) -> bool:
        return any(name == "updateProgress" and data.get("progress") == value
                   for name, data in events)
    return check


def test_callback_to_one_instance_reaches_clients_of_the_other(cluster: Cluster) -> None:
    job_id = start_job(cluster.url_a)  # no worker runs: we report ourselves
    on_b = EventRecorder(cluster.url_b, job_id)
    on_a = EventRecorder(cluster.url_a, job_id)
    try:
        on_b.wait_for(lambda ev: len(ev) >= 1, what="initial state on B")
        on_a.wait_for(lambda ev: len(ev) >= 1, what="initial state on A")
        body = {"jobId": job_id, "progress": 40, "state": "running", "message": "via A"}
        resp = requests.post(cluster.url_a + "/api/progress", json=body, headers=auth(),
                             timeout=5)
        assert resp.status_code == 204, resp.text
        on_b.wait_for(_progress_is(40), what="update posted to A, on B")
        on_a.wait_for(_progress_is(40), what="update posted to A, on A")

        body = {"jobId": job_id, "progress": 70, "state": "running", "message": "via B"}
        resp = requests.post(cluster.url_b + "/api/progress", json=body, headers=auth(),
                             timeout=5)
        assert resp.status_code == 204, resp.text
        on_a.wait_for(_progress_is(70), what="update posted to B, on A")
        on_b.wait_for(_progress_is(70), what="update posted to B, on B")
    finally:
        on_a.close()
        on_b.close()
    # each instance delivered each update exactly once
    for rec in (on_a, on_b):
        progress = [p["progress"] for p in rec.payloads("updateProgress")]
        assert progress.count(40) == 1 and progress.count(70) == 1, progress


def test_two_instances_applying_one_jobs_updates_at_once_agree(cluster: Cluster) -> None:
    job_id = new_id()  # a job of our own: no worker reports for it
    JobStore(redis.Redis.from_url(cluster.redis.url, decode_responses=True)).create(job_id)
    seqs = list(range(1, 41))
    random.Random(7).shuffle(seqs)
    batches = [seqs[n::8] for n in range(8)]  # 8 senders, each to A or B by seq
    applied: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(len(batches))

    def send(batch: list[int]) -> None:
        session = requests.Session()
        start.wait()
        for seq in batch:
            url = cluster.url_a if seq % 2 else cluster.url_b
            resp = session.post(url + "/api/progress", headers=auth(), timeout=10,
                                json={"jobId": job_id, "progress": 2 * seq, "seq": seq,
                                      "state": "running", "message": f"m{seq}"})
            assert resp.status_code == 204, resp.text
            if resp.headers["X-Jobcast-Applied"] == "1":
                with lock:
                    applied.append(seq)

    on_a = EventRecorder(cluster.url_a, job_id)
    on_b = EventRecorder(cluster.url_b, job_id)
    try:
        for rec in (on_a, on_b):
            rec.wait_for(lambda ev: len(ev) >= 1, what="state on connect")
        threads = [threading.Thread(target=send, args=(batch,)) for batch in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        # The highest seq is applied whenever it arrives: it is the final state.
        assert 40 in applied and len(applied) == len(set(applied))
        final = cluster.state(job_id)
        assert (final["state"], final["progress"], final["message"]) == ("running", 80, "m40")
        for rec in (on_a, on_b):
            rec.wait_for(lambda ev: sum(n == "updateProgress" for n, _ in ev) > len(applied),
                         what="every applied update")
    finally:
        on_a.close()
        on_b.close()
    # Each applied update reached the clients of both instances exactly once
    # (the order between instances is the message queue's, not the store's).
    for rec in (on_a, on_b):
        progress = [p["progress"] for p in rec.payloads("updateProgress")[1:]]
        assert sorted(progress) == sorted(2 * seq for seq in applied), (progress, applied)


def test_a_gevent_instance_shares_the_message_queue_with_an_eventlet_one(
        cluster: Cluster) -> None:
    env_g = stack_env(cluster.redis.url, free_port(), SOCKETIO_MESSAGE_QUEUE=cluster.redis.url,
                      ASYNC_MODE="gevent")
    web_g = start_web(env_g, cluster.log_dir, name="web-gevent")
    url_g = env_g["SITE_URL"]
    job_id = new_id()
    JobStore(redis.Redis.from_url(cluster.redis.url, decode_responses=True)).create(job_id)
    on_g = on_a = None
    try:
        assert "Using worker: gevent" in web_g.log_tail(20000)
        on_g = EventRecorder(url_g, job_id)
        on_a = EventRecorder(cluster.url_a, job_id)
        for rec in (on_g, on_a):
            rec.wait_for(lambda ev: len(ev) >= 1, what="state on connect")
        for url, progress in ((cluster.url_a, 30), (url_g, 60)):
            resp = requests.post(url + "/api/progress", headers=auth(), timeout=5,
                                 json={"jobId": job_id, "progress": progress,
                                       "state": "running"})
            assert resp.status_code == 204, resp.text
            for rec in (on_g, on_a):
                rec.wait_for(_progress_is(progress), what=f"{progress} on both instances")
    finally:
        for rec in (on_g, on_a):
            if rec is not None:
                rec.close()
        web_g.stop()


def test_two_workers_on_one_queue_run_each_job_exactly_once(cluster: Cluster) -> None:
    conn = redis.Redis.from_url(cluster.redis.url)
    queue = Queue(cluster.env_a.get("QUEUE_NAME", "jobcast"), connection=conn, serializer=SERIALIZER)
    queue.empty()  # jobs left queued by the tests above (they ran no worker)
    workers = [start_worker(cluster.env_a, cluster.log_dir, name=name)
               for name in ("worker-1", "worker-2")]
    try:
        job_ids = [start_job(cluster.url_a) for _ in range(16)]
        wait_until(lambda: all(cluster.state(j)["state"] == SUCCEEDED for j in job_ids),
                   timeout=60, interval=0.2, what="all jobs succeeded")
        # RQ moves a job to the finished registry just after the last report.
        wait_until(lambda: set(job_ids) <= set(FinishedJobRegistry(queue=queue).get_job_ids()),
                   timeout=10, what="RQ finished registry")
        assert FailedJobRegistry(queue=queue).get_job_ids() == []
        assert StartedJobRegistry(queue=queue).get_job_ids() == []
        ran_by = {j: queue.fetch_job(j).worker_name for j in job_ids}  # type: ignore[union-attr]
        counts = {w.name: w.successful_job_count for w in (
            Worker.find_by_key(f"rq:worker:{name}", connection=conn)
            for name in ("worker-1", "worker-2")) if w is not None}
    finally:
        for proc in workers:
            proc.stop()
        conn.close()
    assert set(ran_by.values()) == {"worker-1", "worker-2"}, ran_by  # both took work
    assert sum(counts.values()) == len(job_ids), counts
    # and each job started exactly once, in one of the two workers' logs
    logs = "".join(proc.log_path.read_text() for proc in workers)
    started = re.findall(r"job ([0-9a-f-]{36}) started", logs)
    assert sorted(started) == sorted(job_ids)


def test_worker_can_emit_straight_to_the_message_queue(cluster: Cluster) -> None:
    # The callback URL answers 404: a worker that used HTTP would fail the job.
    env = dict(cluster.env_a, WORKER_EMIT="direct",
               PROGRESS_URL=cluster.url_a + "/api/no-such-callback")
    worker = start_worker(env, cluster.log_dir, name="worker-direct")
    job_id = start_job(cluster.url_a)
    rec = EventRecorder(cluster.url_b, job_id)
    try:
        rec.wait_for(final_state_received(), timeout=30, what="final state via direct emit")
    finally:
        rec.close()
        worker.stop()
    payloads = rec.payloads("updateProgress")
    assert payloads[-1]["state"] == SUCCEEDED and payloads[-1]["progress"] == 100
    progress = [p["progress"] for p in payloads]
    assert progress == sorted(progress)
    assert cluster.state(job_id)["state"] == SUCCEEDED
    assert "direct to Redis" in worker.log_tail()


def test_direct_reporter_refuses_unknown_jobs(redis_url: str) -> None:
    cfg = Config(environ={}, SECRET_KEY="s", PROGRESS_TOKEN="t", WORKER_TOKEN="w",
                 REDIS_URL=redis_url,
                 SOCKETIO_MESSAGE_QUEUE=redis_url, WORKER_EMIT="direct")
    reporter = make_reporter(cfg, "per-job-token")
    assert isinstance(reporter, DirectReporter)
    with pytest.raises(ReportError) as info:
        reporter.report("6f1c2f5e-1c1b-4d52-8b0e-6f2b7c1a9d10", 10)
    assert info.value.status == 404


def test_scale_settings_are_validated() -> None:
    base = {"SECRET_KEY": "s", "PROGRESS_TOKEN": "t", "WORKER_TOKEN": "w"}
    with pytest.raises(ConfigError, match="SOCKETIO_MESSAGE_QUEUE"):
        Config(environ=dict(base, WORKER_EMIT="direct"))
    with pytest.raises(ConfigError, match="WORKER_EMIT"):
        Config(environ=dict(base, WORKER_EMIT="carrier-pigeon"))
    with pytest.raises(ConfigError, match="below WORKER_CONNECTIONS"):
        Config(environ=dict(base, WORKER_CONNECTIONS="100", SOCKETIO_MAX_CONNECTIONS="100"))
    assert Config(environ=dict(base, WORKER_CONNECTIONS="100")).SOCKETIO_MAX_CONNECTIONS == 90
    assert Config(environ=base).SOCKETIO_MAX_CONNECTIONS == default_socketio_cap(1000) == 900


def test_site_runs_under_gunicorn_gevent(log_dir: Path, tmp_path: Path) -> None:
    stack = start_stack(log_dir, tmp_path / "redis", ASYNC_MODE="gevent")
    try:
        assert "Using worker: gevent" in stack.web.log_tail(20000)
        job_id = stack.start_job()
        over_ws = EventRecorder(stack.url, job_id)
        over_polling = EventRecorder(stack.url, job_id, transports=["polling"])
        try:
            for rec in (over_ws, over_polling):
                rec.wait_for(final_state_received(), timeout=30, what="final state (gevent)")
        finally:
            over_ws.close()
            over_polling.close()
        for rec in (over_ws, over_polling):
            payloads = rec.payloads("updateProgress")
            assert payloads[-1] == demo_final(job_id)
        assert stack.job_state(job_id)["state"] == SUCCEEDED
    finally:
        stop_stack(stack)
