"""A report that is not refused renews a claimed external job's lease in the same
script run that applies it (shared/lua/update_job.lua), against a real Redis."""

from __future__ import annotations

import pytest
import redis

from shared import keys
from shared.claimqueue import Claim, ExternalQueues
from shared.protocol import ProgressUpdate, new_id
from shared.store import JobStore, StaleAttempt

LEASE = 40
T0 = 1_900_000_000.0


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, ttl=3600, lease_seconds=LEASE)


def claimed(store: JobStore, redis_client: redis.Redis) -> str:
    """An external job claimed at T0 (its lease runs to T0 + 30)."""
    job_id = new_id()
    store.create(job_id, kind="external", external="1", attempt="1", args="{}")
    queues = ExternalQueues(redis_client, lease_seconds=30)
    queues.push(job_id, "external")
    got = queues.claim(["external"], "w1", now=T0)
    assert isinstance(got, Claim) and got.job_id == job_id
    assert deadline(redis_client, job_id) == T0 + 30
    return job_id


def deadline(redis_client: redis.Redis, job_id: str) -> float | None:
    return redis_client.zscore(keys.EXTERNAL_LEASES, job_id)  # type: ignore[return-value]


def evalsha_calls(redis_client: redis.Redis) -> int:
    stats = redis_client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def test_applied_and_dropped_reports_renew_and_the_end_removes_the_lease(
        store: JobStore, redis_client: redis.Redis) -> None:
    job_id = claimed(store, redis_client)
    warm = new_id()
    store.create(warm)
    store.apply(ProgressUpdate(warm, 1))  # the script is loaded (a first EVALSHA is refused)
    before = evalsha_calls(redis_client)
    assert store.apply(ProgressUpdate(job_id, 10, seq=1), now=T0 + 5, attempt=1).state is not None
    assert evalsha_calls(redis_client) == before + 1  # one script run: no separate renewal
    assert deadline(redis_client, job_id) == T0 + 5 + LEASE
    # dropped (seq not above the stored one, or no change): still renews
    assert store.apply(ProgressUpdate(job_id, 50, seq=1), now=T0 + 9, attempt=1).state is None
    assert deadline(redis_client, job_id) == T0 + 9 + LEASE
    assert store.apply(ProgressUpdate(job_id, 10, seq=2), now=T0 + 12).state is None
    assert deadline(redis_client, job_id) == T0 + 12 + LEASE
    # refused (another attempt's token): the lease is left alone
    with pytest.raises(StaleAttempt):
        store.apply(ProgressUpdate(job_id, 60), now=T0 + 20, attempt=2)
    assert deadline(redis_client, job_id) == T0 + 12 + LEASE
    done = store.apply(ProgressUpdate(job_id, 100, "succeeded"), now=T0 + 21, attempt=1).state
    assert done is not None and done.state == "succeeded"
    assert deadline(redis_client, job_id) is None


def test_a_report_after_the_end_removes_a_lease_left_behind(
        store: JobStore, redis_client: redis.Redis) -> None:
    job_id = claimed(store, redis_client)
    redis_client.hset(keys.job_key(job_id), "state", "cancelled")  # as an old site left it
    assert store.apply(ProgressUpdate(job_id, 20), now=T0 + 1).state is None
    assert deadline(redis_client, job_id) is None


def test_jobs_rq_runs_and_unclaimed_jobs_get_no_lease(store: JobStore,
                                                       redis_client: redis.Redis) -> None:
    rq_job, waiting = new_id(), new_id()
    store.create(rq_job, kind="demo")
    store.create(waiting, kind="external", external="1", attempt="1", args="{}")
    assert store.apply(ProgressUpdate(rq_job, 10), now=T0).state is not None
    assert store.apply(ProgressUpdate(waiting, 10), now=T0).state is not None
    assert redis_client.zcard(keys.EXTERNAL_LEASES) == 0


def test_a_pipeline_of_reports_renews_each_lease(store: JobStore,
                                                 redis_client: redis.Redis) -> None:
    first, second = claimed(store, redis_client), claimed(store, redis_client)
    answers = store.apply_many([(ProgressUpdate(first, 30), 1),
                                (ProgressUpdate(second, 100, "succeeded"), None)], now=T0 + 3)
    assert all(isinstance(answer, tuple) for answer in answers)
    assert deadline(redis_client, first) == T0 + 3 + LEASE
    assert deadline(redis_client, second) is None
