"""Faults against real processes: a killed worker or work horse, a killed web
process, a restarted Redis. Each test starts its own stack on free ports."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import requests
from rq import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry

from shared import keys
from shared.rqconf import SERIALIZER
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import (
    EventRecorder,
    Process,
    demo_final,
    final_state_received,
    start_worker,
    state_on_connect,
    wait_until,
)
from worker.recovery import LOST_MESSAGE

ABANDONED_AFTER = 6  # seconds (beat 1 s, lease 5 s); production default is 60
SCAN = max(1, ABANDONED_AFTER // 4)  # a live worker cleans RQ's registry this often

Events = list[tuple[str, Any]]


@pytest.fixture
def stacks(log_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Start stacks (and extra processes, via ``extras``) that are stopped at the end."""
    started: list[Stack] = []
    extras: list[Process] = []

    def make(**env: str) -> Stack:
        # fresh log files per stack: tests read them (process logs append by name)
        logs = log_dir / f"{tmp_path.name}-{len(started)}"
        logs.mkdir()
        stack = start_stack(logs, tmp_path / f"redis-{len(started)}", **env)
        stack.extras = extras  # type: ignore[attr-defined]
        started.append(stack)
        return stack

    yield make
    for proc in extras:
        proc.stop()
    for stack in started:
        stop_stack(stack)


def running_at_least(job_id: str, progress: int) -> Callable[[Events], bool]:
    """Predicate: a running update at or above ``progress`` arrived."""
    def check(events: Events) -> bool:
        return any(name == "updateProgress" and data.get("jobId") == job_id
                   and data["state"] == "running" and data["progress"] >= progress
                   for name, data in events)
    return check


def last_update(rec: EventRecorder) -> dict[str, Any]:
    return rec.payloads("updateProgress")[-1]  # type: ignore[no-any-return]


def horse_of(worker: Process) -> psutil.Process:
    """The work horse (forked child running a job) of a fork worker.

    RQ puts the horse in a process group of its own; the worker's other child,
    RQ's scheduler process, stays in the worker's group.
    """
    def child() -> psutil.Process | None:
        for proc in psutil.Process(worker.pid).children():
            try:
                if os.getpgid(proc.pid) == proc.pid:
                    return proc
            except ProcessLookupError:
                continue
        return None
    return wait_until(child, timeout=10, what="work horse")


def kill_worker_and_horse(worker: Process) -> None:
    """SIGKILL the worker first (so nobody is left to notice), then its horse."""
    horse = horse_of(worker)
    worker.kill()
    horse.kill()
    _gone, alive = psutil.wait_procs([horse], timeout=10)
    assert not alive, "the work horse survived SIGKILL"


def rq_registries(stack: Stack, job_id: str) -> tuple[bool, bool]:
    """(in StartedJobRegistry, in FailedJobRegistry) for ``job_id``."""
    conn = redis.Redis.from_url(stack.redis.url)
    queue = Queue("jobcast", connection=conn, serializer=SERIALIZER)
    started = job_id in StartedJobRegistry(queue=queue).get_job_ids(cleanup=False)
    failed = job_id in FailedJobRegistry(queue=queue).get_job_ids(cleanup=False)
    conn.close()
    return started, failed


# -- the worker dies ---------------------------------------------------------------


def test_killed_worker_job_is_failed_by_another_worker_and_pushed(
        stacks: Callable[..., Stack]) -> None:
    stack = stacks(ABANDONED_AFTER=str(ABANDONED_AFTER), DEMO_STEP_DELAY="1.0")
    job_id = stack.start_job()
    rec = EventRecorder(stack.url, job_id)
    try:
        rec.wait_for(running_at_least(job_id, 10), timeout=20, what="job running")
        # The documented bound holds "given a live worker on the queue": a second
        # worker (another machine) is up, idle, before the first one dies.
        other = start_worker(stack.env, stack.log_dir, name="worker-2")
        stack.extras.append(other)  # type: ignore[attr-defined]
        kill_worker_and_horse(stack.worker)
        killed = time.monotonic()
        rec.wait_for(final_state_received(), timeout=ABANDONED_AFTER + 20,
                     what="failed state pushed")
        elapsed = time.monotonic() - killed
        final = last_update(rec)
    finally:
        rec.close()
    assert final["state"] == "failed" and final["message"] == LOST_MESSAGE
    # within ABANDONED_AFTER of the kill, plus one scan interval
    assert elapsed <= ABANDONED_AFTER + SCAN, f"failed {elapsed:.1f} s after the kill"
    assert final["progress"] >= 10  # the bar does not move back
    assert stack.job_state(job_id)["state"] == "failed"
    # RQ moves the job between its registries just after our report: wait for it.
    wait_until(lambda: rq_registries(stack, job_id) == (False, True), timeout=10,
               what="job moved from the started to the failed registry")
    # the surviving worker goes on working
    after = stack.start_job()
    wait_until(lambda: stack.job_state(after)["state"] == "succeeded", timeout=30,
               what="next job on the new worker")


def test_worker_restarted_under_same_name_fails_its_lost_job(
        stacks: Callable[..., Stack]) -> None:
    stack = stacks(ABANDONED_AFTER=str(ABANDONED_AFTER), DEMO_STEP_DELAY="0.5")
    job_id = stack.start_job()
    rec = EventRecorder(stack.url, job_id)
    try:
        rec.wait_for(running_at_least(job_id, 20), timeout=20, what="job running")
        kill_worker_and_horse(stack.worker)
        killed = time.monotonic()
        stack.worker.start()  # what a supervisor does: same command, same --name
        rec.wait_for(final_state_received(), timeout=ABANDONED_AFTER + 20,
                     what="failed state pushed")
        elapsed = time.monotonic() - killed
        final = last_update(rec)
    finally:
        rec.close()
    assert final["state"] == "failed" and final["message"] == LOST_MESSAGE
    assert elapsed <= ABANDONED_AFTER + SCAN, f"failed {elapsed:.1f} s after the kill"
    assert stack.worker.alive(), stack.worker.log_tail()
    after = stack.start_job()
    wait_until(lambda: stack.job_state(after)["state"] == "succeeded", timeout=30,
               what="next job on the restarted worker")


@pytest.mark.parametrize("worker_class", ["fork", "simple"])
def test_live_worker_with_a_long_job_is_never_taken_for_dead(
        stacks: Callable[..., Stack], worker_class: str) -> None:
    # The job runs three times ABANDONED_AFTER plus a scan (about 21 s) while a
    # second worker cleans RQ's registry every SCAN seconds: a broken lease would
    # be found whatever the scans' phase.
    step = 3 * (ABANDONED_AFTER + SCAN) / 10
    stack = stacks(WORKER_CLASS=worker_class, DEMO_STEP_DELAY=str(step), JOB_TIMEOUT="60",
                   ABANDONED_AFTER=str(ABANDONED_AFTER))
    job_id = stack.start_job()
    rec = EventRecorder(stack.url, job_id)
    try:
        rec.wait_for(running_at_least(job_id, 10), timeout=20, what="job running")
        other = start_worker(stack.env, stack.log_dir, name="worker-2")
        stack.extras.append(other)  # type: ignore[attr-defined]
        started = time.monotonic()
        rec.wait_for(final_state_received(), timeout=60, what="final state")
        ran = time.monotonic() - started
    finally:
        rec.close()
    assert last_update(rec)["state"] == "succeeded", rec.payloads("updateProgress")
    assert ran >= 2 * (ABANDONED_AFTER + SCAN), f"the job ran only {ran:.1f} s beside worker-2"
    assert "abandoned" not in other.log_tail(50_000)


def test_killed_simple_worker_job_is_failed_after_its_timeout_plus_lease(
        stacks: Callable[..., Stack]) -> None:
    # An in-process worker cannot heartbeat during a job: its lease covers the
    # job's timeout, so its job is failed within JOB_TIMEOUT + ABANDONED_AFTER.
    timeout = 8
    stack = stacks(WORKER_CLASS="simple", JOB_TIMEOUT=str(timeout), DEMO_STEP_DELAY="0.7",
                   REPORT_RETRY_SECONDS="1", ABANDONED_AFTER=str(ABANDONED_AFTER))
    job_id = stack.start_job()
    rec = EventRecorder(stack.url, job_id)
    try:
        rec.wait_for(running_at_least(job_id, 10), timeout=20, what="job running")
        other = start_worker(stack.env, stack.log_dir, name="worker-2")  # live, idle
        stack.extras.append(other)  # type: ignore[attr-defined]
        stack.worker.kill()
        killed = time.monotonic()
        rec.wait_for(final_state_received(), timeout=timeout + ABANDONED_AFTER + 20,
                     what="failed state pushed")
        elapsed = time.monotonic() - killed
        final = last_update(rec)
    finally:
        rec.close()
    assert final["state"] == "failed" and final["message"] == LOST_MESSAGE
    # within JOB_TIMEOUT + ABANDONED_AFTER of the kill, plus one scan interval
    assert elapsed <= timeout + ABANDONED_AFTER + SCAN, f"failed {elapsed:.1f} s after the kill"


def test_killed_work_horse_is_reported_failed_at_once(stacks: Callable[..., Stack]) -> None:
    # ABANDONED_AFTER stays at its default (60 s): the parent worker reports directly.
    stack = stacks(DEMO_STEP_DELAY="0.5")
    job_id = stack.start_job()
    rec = EventRecorder(stack.url, job_id)
    try:
        rec.wait_for(running_at_least(job_id, 20), timeout=20, what="job running")
        horse_of(stack.worker).send_signal(signal.SIGKILL)
        rec.wait_for(final_state_received(), timeout=15, what="failed state pushed")
        final = last_update(rec)
    finally:
        rec.close()
    assert final["state"] == "failed"
    assert final["message"] == "The job's process was killed by signal 9."
    assert stack.worker.alive()
    # RQ moves the job between its registries just after our report: wait for it.
    wait_until(lambda: rq_registries(stack, job_id) == (False, True), timeout=10,
               what="job moved from the started to the failed registry")


# -- the web process dies ----------------------------------------------------------


def test_web_killed_and_restarted_mid_job_loses_nothing(stacks: Callable[..., Stack]) -> None:
    stack = stacks(DEMO_STEP_DELAY="0.3", REPORT_RETRY_SECONDS="60", JOB_TIMEOUT="150")
    job_id = stack.start_job()
    rec = EventRecorder(stack.url, job_id)
    try:
        rec.wait_for(running_at_least(job_id, 20), timeout=20, what="job running")
        stack.web.kill()
    finally:
        rec.close()
    # The worker keeps retrying its callback while the site is down...
    wait_until(lambda: "retrying in" in stack.worker.log_tail(20_000), timeout=10,
               what="the reporter to retry")
    stack.web.start()
    wait_until(lambda: requests.get(stack.url + "/", timeout=1).status_code == 200,
               timeout=30, what="web to come back")
    wait_until(lambda: stack.job_state(job_id)["state"] == "succeeded", timeout=30,
               what="job to finish")
    # ...and every update got through the site: none needed the fallback.
    assert "through the fallback" not in stack.worker.log_tail(50_000)
    assert state_on_connect(stack.url, job_id, timeout=10) == (
        "updateProgress", demo_final(job_id))


def test_site_down_longer_than_retries_still_stores_the_final_state(
        stacks: Callable[..., Stack]) -> None:
    stack = stacks(DEMO_STEP_DELAY="0.2", REPORT_RETRY_SECONDS="1")
    job_id = stack.start_job()
    rec = EventRecorder(stack.url, job_id)
    try:
        rec.wait_for(running_at_least(job_id, 10), timeout=20, what="job running")
        stack.web.kill()
    finally:
        rec.close()
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    try:
        # with the site still down, the worker wrote the end straight into Redis
        wait_until(lambda: client.hget(keys.job_key(job_id), "state") == "succeeded",
                   timeout=40, what="final state in Redis")
        assert client.hget(keys.job_key(job_id), "progress") == "100"
    finally:
        client.close()
    assert "through the fallback" in stack.worker.log_tail(50_000)
    stack.web.start()
    wait_until(lambda: requests.get(stack.url + "/", timeout=1).status_code == 200,
               timeout=30, what="web to come back")
    event, payload = state_on_connect(stack.url, job_id, timeout=10)
    assert event == "updateProgress"
    assert payload["state"] == "succeeded" and payload["progress"] == 100


# -- Redis restarts ----------------------------------------------------------------


def jobcast_keys(url: str) -> dict[str, Any]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        found = {}
        for key in client.scan_iter(f"{keys.PREFIX}:*"):
            kind = client.type(key)
            if kind == "hash":
                found[key] = client.hgetall(key)
            elif kind == "zset":
                found[key] = client.zrange(key, 0, -1)
        return found
    finally:
        client.close()


def test_redis_restart_keeps_queued_jobs_and_state_and_everyone_reconnects(
        stacks: Callable[..., Stack]) -> None:
    stack = stacks(DEMO_STEP_DELAY="0.05")
    done = stack.start_job()
    wait_until(lambda: stack.job_state(done)["state"] == "succeeded", timeout=30,
               what="first job")
    stack.worker.stop()
    waiting = [stack.start_job() for _ in range(3)]
    before = jobcast_keys(stack.redis.url)
    stack.redis.stop()  # SIGTERM: Redis flushes its append-only file
    down = requests.post(stack.url + "/api/jobs", timeout=10)
    assert down.status_code == 503 and "unavailable" in down.json()["error"]
    stack.redis.start()
    # the web process reconnects by itself; everything stored is back
    wait_until(lambda: stack.job_state(done)["state"] == "succeeded", timeout=20,
               what="web to read Redis again")
    assert jobcast_keys(stack.redis.url) == before
    assert [stack.job_state(j)["state"] for j in waiting] == ["queued"] * 3
    stack.worker.start()
    for job_id in waiting:
        wait_until(lambda j=job_id: stack.job_state(j)["state"] == "succeeded", timeout=30,
                   what=f"queued job {job_id} to run after the restart")

    # A running worker and web survive a restart under them, without a restart of their own.
    stack.redis.stop()
    stack.redis.start()
    worker_pid = stack.worker.pid
    job_id = wait_until(lambda: stack.start_job(), timeout=20, what="job creation")
    rec = EventRecorder(stack.url, job_id)
    try:
        rec.wait_for(final_state_received(), timeout=60, what="job after Redis restart")
    finally:
        rec.close()
    assert last_update(rec)["state"] == "succeeded"
    assert stack.worker.alive() and stack.worker.pid == worker_pid
    assert stack.web.alive()


def longest_wait_for_redis(log: str) -> float:
    """The longest outage the worker's log reports waiting through (shared/redisconn.py)."""
    return max((float(s) for s in re.findall(r"Redis has not answered for (\d+) s", log)),
               default=0.0)


def test_worker_rides_out_redis_down_while_its_job_ends(
        stacks: Callable[..., Stack], tmp_path: Path) -> None:
    # A job ends while Redis is down: the horse's and the worker's bookkeeping
    # wait for Redis (REDIS_RETRY_SECONDS) instead of quitting after redis-py's
    # default retries (about 3 s), which ended the whole worker before.
    stack = stacks(REDIS_RETRY_SECONDS="60")
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    client = redis.Redis.from_url(stack.redis.url)
    try:
        job = Queue("jobcast", connection=client, serializer=SERIALIZER).enqueue("tests.jobs.wait_for_writer",
                                                          str(fifo))
        wait_until(lambda: job.get_status(refresh=True) == "started", timeout=20,
                   what="job started")
        worker_pid = stack.worker.pid
        stack.redis.stop()
        with open(fifo, "w") as pipe:  # the job returns now, into the outage
            pipe.write("done")
        # Outlast redis-py's default retries (about 3 s) twice over.
        def waited_six_seconds() -> bool:
            assert stack.worker.alive(), f"the worker quit:\n{stack.worker.log_tail()}"
            return longest_wait_for_redis(stack.worker.log_tail(20000)) >= 6

        wait_until(waited_six_seconds, timeout=30, what="the worker to wait 6 s for Redis")
        assert stack.worker.pid == worker_pid
        stack.redis.start()
        wait_until(lambda: job.get_status(refresh=True) == "finished", timeout=30,
                   what="the job recorded finished once Redis is back")
        assert job.return_value(refresh=True) == "done"
    finally:
        client.close()
    after = stack.start_job()
    wait_until(lambda: stack.job_state(after)["state"] == "succeeded", timeout=30,
               what="the next job to run on the same worker")
    assert stack.worker.alive() and stack.worker.pid == worker_pid
