"""Reports that arrive while a round trip is out share the next one
(website/workers/coalesce.py), against a real Redis and real threads."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import redis
from flask.testing import FlaskClient

from shared import keys
from shared.coalesce import Call, OwnConnection, ReportCoalescer, SenderGone
from shared.protocol import ProgressUpdate, new_id
from shared.store import JobState, JobStore, StaleAttempt, UnknownJob, UpdateAnswer
from tests.support import TEST_OPS_TOKEN, auth, wait_until


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, ttl=3600)


def own(store: JobStore) -> OwnConnection:
    """The site's runner: a connection of its own, made from the store's pool."""
    return OwnConnection(store._run_on, store.client.connection_pool)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=16) as executor:
        yield executor


class Gate:
    """Wraps a batch runner: the first round trip waits until ``queued`` reports
    are queued behind it, so the test knows what the next batch holds."""

    def __init__(self, run: object, coalescer: ReportCoalescer | None = None) -> None:
        self.run = run
        self.coalescer = coalescer
        self.batches: list[int] = []
        self.release = threading.Event()

    def __call__(self, calls: list[Call]) -> list[UpdateAnswer | redis.RedisError]:
        self.batches.append(len(calls))
        if len(self.batches) == 1:
            assert self.release.wait(10), "the test never released the first batch"
        return self.run(calls)  # type: ignore[operator, no-any-return]


def queued(coalescer: ReportCoalescer, count: int) -> None:
    wait_until(lambda: len(coalescer._queued) == count, timeout=10,
               what=f"{count} reports queued")


def start(pool: ThreadPoolExecutor, coalescer: ReportCoalescer, updates: list[ProgressUpdate],
          attempt: int | None = None) -> list[Future[tuple[JobState | None, str]]]:
    return [pool.submit(coalescer.apply, update, attempt, 1.0e9) for update in updates]


def test_reports_queued_behind_a_round_trip_share_the_next_one(
        store: JobStore, pool: ThreadPoolExecutor) -> None:
    jobs = [new_id() for _ in range(9)]
    for job_id in jobs:
        store.create(job_id)
    gate = Gate(own(store))
    coalescer = ReportCoalescer(gate)
    first = start(pool, coalescer, [ProgressUpdate(jobs[0], 10)])
    wait_until(lambda: gate.batches, what="the first round trip")
    rest = start(pool, coalescer, [ProgressUpdate(job_id, 40, message="m") for job_id in jobs[1:]])
    queued(coalescer, 8)
    gate.release.set()
    answers = [future.result(timeout=10) for future in first + rest]
    assert gate.batches == [1, 8]
    assert coalescer.round_trips == 2 and coalescer.reports == 9
    assert [answer.state.progress for answer in answers if answer.state] == [10] + [40] * 8
    for job_id in jobs[1:]:
        stored = store.get(job_id)
        assert stored is not None and stored.progress == 40 and stored.message == "m"
    # with nothing out, a report goes at once, alone
    alone = coalescer.apply(ProgressUpdate(jobs[0], 20), None, 1.0e9)
    assert alone[0] is not None and alone[0].progress == 20 and gate.batches[-1] == 1


def test_each_report_of_a_batch_gets_its_own_answer(store: JobStore,
                                                    pool: ThreadPoolExecutor) -> None:
    running, done, retried = new_id(), new_id(), new_id()
    for job_id in (running, done, retried):
        store.create(job_id)
    store.apply(ProgressUpdate(done, 100, "succeeded"))
    store.apply(ProgressUpdate(retried, 100, "failed"))
    store.reset(retried, ("failed",))  # now on attempt 2
    gate = Gate(own(store))
    coalescer = ReportCoalescer(gate)
    first = start(pool, coalescer, [ProgressUpdate(running, 5)])
    wait_until(lambda: gate.batches, what="the first round trip")
    batch = start(pool, coalescer, [ProgressUpdate(running, 50)], attempt=1)
    batch += start(pool, coalescer, [ProgressUpdate(done, 50)])
    batch += start(pool, coalescer, [ProgressUpdate(new_id(), 50)])
    batch += start(pool, coalescer, [ProgressUpdate(retried, 50)], attempt=1)
    queued(coalescer, 4)
    gate.release.set()
    assert first[0].result(timeout=10)[0] is not None
    applied, name, _cancel = batch[0].result(timeout=10)
    assert applied is not None and applied.progress == 50 and name == "running"
    assert batch[1].result(timeout=10) == (None, "succeeded", False)  # dropped: it had ended
    with pytest.raises(UnknownJob):
        batch[2].result(timeout=10)
    with pytest.raises(StaleAttempt):
        batch[3].result(timeout=10)
    assert gate.batches == [1, 4]


def test_a_redis_error_answers_the_whole_batch_and_the_next_report_goes(
        store: JobStore, pool: ThreadPoolExecutor) -> None:
    job_id = new_id()
    store.create(job_id)
    run = own(store)

    def broken(calls: list[Call]) -> list[UpdateAnswer | redis.RedisError]:
        if len(calls) > 1:
            raise redis.ConnectionError("Redis went away")
        return run(calls)

    gate = Gate(broken)
    coalescer = ReportCoalescer(gate)
    first = start(pool, coalescer, [ProgressUpdate(job_id, 10)])
    wait_until(lambda: gate.batches, what="the first round trip")
    batch = start(pool, coalescer, [ProgressUpdate(job_id, 20 + i) for i in range(3)])
    queued(coalescer, 3)
    gate.release.set()
    assert first[0].result(timeout=10)[0] is not None
    for future in batch:
        with pytest.raises(redis.ConnectionError):
            future.result(timeout=10)
    applied, _name, _cancel = coalescer.apply(ProgressUpdate(job_id, 60), None, 1.0e9)
    assert applied is not None and applied.progress == 60


def test_a_sender_that_dies_wakes_its_batch(store: JobStore, pool: ThreadPoolExecutor) -> None:
    job_id = new_id()
    store.create(job_id)
    run = own(store)

    def buggy(calls: list[Call]) -> list[UpdateAnswer | redis.RedisError]:
        if len(calls) > 1:
            raise KeyError("a bug")
        return run(calls)

    gate = Gate(buggy)
    coalescer = ReportCoalescer(gate)
    start(pool, coalescer, [ProgressUpdate(job_id, 10)])
    wait_until(lambda: gate.batches, what="the first round trip")
    batch = start(pool, coalescer, [ProgressUpdate(job_id, 20 + i) for i in range(3)])
    queued(coalescer, 3)
    gate.release.set()
    with pytest.raises(KeyError):
        batch[0].result(timeout=10)  # the sender has the bug's own error
    for future in batch[1:]:
        with pytest.raises(SenderGone):
            future.result(timeout=10)
    assert coalescer.apply(ProgressUpdate(job_id, 90), None, 1.0e9)[0] is not None


def test_batches_are_capped_and_the_rest_goes_next(store: JobStore,
                                                   pool: ThreadPoolExecutor) -> None:
    jobs = [new_id() for _ in range(8)]
    for job_id in jobs:
        store.create(job_id)
    gate = Gate(own(store))
    coalescer = ReportCoalescer(gate, max_batch=3)
    first = start(pool, coalescer, [ProgressUpdate(jobs[0], 1)])
    wait_until(lambda: gate.batches, what="the first round trip")
    rest = start(pool, coalescer, [ProgressUpdate(job_id, 2) for job_id in jobs[1:]])
    queued(coalescer, 7)
    gate.release.set()
    for future in first + rest:
        assert future.result(timeout=10)[0] is not None
    assert gate.batches == [1, 3, 3, 1]


def test_a_round_trip_reloads_a_flushed_script_and_keeps_per_call_errors(
        store: JobStore, redis_client: redis.Redis) -> None:
    good, broken = new_id(), new_id()
    store.create(good)
    store.create(broken)
    redis_client.script_flush()
    redis_client.set(keys.job_log_key(broken), "not a stream")  # WRONGTYPE in the script
    calls: list[Call] = [(ProgressUpdate(good, 30), None, 1.0e9),
                         (ProgressUpdate(broken, 30, log=("a line",)), None, 1.0e9),
                         (ProgressUpdate(new_id(), 30), None, 1.0e9)]
    answers = own(store)(calls)
    first = answers[0]
    assert isinstance(first, tuple) and first[0] is not None and first[0].progress == 30
    assert isinstance(answers[1], redis.ResponseError)
    assert isinstance(answers[2], UnknownJob)
    stored = store.get(good)
    assert stored is not None and stored.progress == 30
    # the plain pipeline asks SCRIPT EXISTS first: the store's round trips do not
    before = redis_client.info("commandstats").get("cmdstat_script|exists", {}).get("calls", 0)
    own(store)(calls[:1] * 2)
    store.apply_many([(call[0], None) for call in calls[:1] * 2])
    after = redis_client.info("commandstats").get("cmdstat_script|exists", {}).get("calls", 0)
    assert after == before


def test_the_site_applies_reports_through_it_and_metrics_count_them(client: FlaskClient) -> None:
    job_id = client.post("/api/jobs").get_json()["id"]
    for progress in (10, 20, 30):
        resp = client.post("/api/progress", json={"jobId": job_id, "progress": progress, "state": "running"},
                           headers=auth())
        assert resp.status_code == 204
    assert client.post("/api/progress", json={"jobId": new_id(), "progress": 5, "state": "running"},
                       headers=auth()).status_code == 404
    assert client.get(f"/api/jobs/{job_id}").get_json()["progress"] == 30
    assert client.get("/metrics").status_code == 401  # operators only, as the rest
    text = client.get("/metrics", headers=auth(TEST_OPS_TOKEN)).get_data(as_text=True)
    counts = {name: float(value) for name, value in
              re.findall(r"^(jobcast_report_\w+_total) (\S+)$", text, re.M)}
    assert counts == {"jobcast_report_round_trips_total": 4.0,
                      "jobcast_report_applies_total": 4.0}


def test_its_own_connection_reloads_a_flushed_script_and_survives_a_killed_connection(
        store: JobStore, redis_client: redis.Redis) -> None:
    jobs = [new_id() for _ in range(3)]
    for job_id in jobs:
        store.create(job_id)
    redis_client.set(keys.job_log_key(jobs[1]), "not a stream")  # WRONGTYPE in the script
    run = own(store)
    calls: list[Call] = [(ProgressUpdate(jobs[0], 10), None, 1.0e9),
                         (ProgressUpdate(jobs[1], 10, log=("a line",)), None, 1.0e9),
                         (ProgressUpdate(new_id(), 10), None, 1.0e9)]
    redis_client.script_flush()
    answers = run(calls)
    assert isinstance(answers[0], tuple) and answers[0][0] is not None
    assert isinstance(answers[1], redis.ResponseError)
    assert isinstance(answers[2], UnknownJob)
    # the connection Redis closed (a restart, a timeout) is opened again, once
    killed = redis_client.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    again = run([(ProgressUpdate(jobs[2], 30), None, 1.0e9)])
    first = again[0]
    assert isinstance(first, tuple) and first[0] is not None and first[0].progress == 30
    stored = store.get(jobs[0])
    assert stored is not None and stored.progress == 10
