"""JobStore against a real Redis: the update rules hold atomically in Lua."""

from __future__ import annotations

import pytest
import redis

from shared import keys
from shared.protocol import ProgressUpdate, new_id
from shared.store import JobStore, UnknownJob


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, ttl=3600)


def test_create_then_get(store: JobStore, redis_client: redis.Redis) -> None:
    job_id = new_id()
    store.create(job_id, kind="demo")
    state = store.get(job_id)
    assert state is not None and state.state == "queued" and state.progress == 0
    assert 0 < redis_client.ttl(keys.job_key(job_id)) <= 3600
    assert redis_client.zscore(keys.RECENT_JOBS, job_id) is not None
    assert store.get(new_id()) is None


def test_progress_never_moves_back_and_terminal_is_final(store: JobStore) -> None:
    job_id = new_id()
    store.create(job_id)
    assert store.apply(ProgressUpdate(job_id, 50)).state is not None
    late = store.apply(ProgressUpdate(job_id, 30, message="late")).state
    assert late is not None and late.progress == 50  # message taken, bar kept
    done = store.apply(ProgressUpdate(job_id, 90, "succeeded")).state
    assert done is not None and done.progress == 100 and done.state == "succeeded"
    assert store.apply(ProgressUpdate(job_id, 10, "failed", "too late")).state is None
    assert store.apply(ProgressUpdate(job_id, 100, "running")).state is None
    final = store.get(job_id)
    assert final is not None and final.state == "succeeded" and final.progress == 100


def test_duplicates_and_out_of_order_seq_are_dropped(store: JobStore) -> None:
    job_id = new_id()
    store.create(job_id)
    assert store.apply(ProgressUpdate(job_id, 20, seq=2)).state is not None
    assert store.apply(ProgressUpdate(job_id, 20, seq=2)).state is None  # duplicate
    assert store.apply(ProgressUpdate(job_id, 30, seq=1)).state is None  # older
    assert store.apply(ProgressUpdate(job_id, 20)).state is None  # same content, no seq
    state = store.get(job_id)
    # Reports tied to no attempt (the shared tokens') keep their own seq.
    assert state is not None and state.progress == 20 and state.extra["seq_any"] == "2"


def test_unknown_job_raises(store: JobStore) -> None:
    with pytest.raises(UnknownJob):
        store.apply(ProgressUpdate(new_id(), 10))


def test_finish_keeps_progress(store: JobStore) -> None:
    job_id = new_id()
    store.create(job_id)
    store.apply(ProgressUpdate(job_id, 70))
    state = store.finish(job_id, "failed", "boom")
    assert state is not None and state.progress == 70 and state.message == "boom"
    assert store.finish(job_id, "succeeded") is None
