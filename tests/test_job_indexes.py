"""Job indexes and filters against a real Redis: kept with every change, paged stably."""

from __future__ import annotations

import time

import pytest
import redis

from shared import keys
from shared.jobquery import BadFilter, JobFilter, JobQuery, parse_cursor
from shared.protocol import ProgressUpdate, new_id
from shared.store import JobStore


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client, ttl=3600)


@pytest.fixture
def query(redis_client: redis.Redis) -> JobQuery:
    return JobQuery(redis_client)


def members(client: redis.Redis, key: str) -> set[str]:
    return set(client.zrange(key, 0, -1))  # type: ignore[arg-type]


def test_indexes_follow_create_update_reset_and_discard(store: JobStore,
                                                        redis_client: redis.Redis) -> None:
    job_id = new_id()
    store.create(job_id, kind="demo", owner="alice")
    assert job_id in members(redis_client, keys.state_index("queued"))
    assert job_id in members(redis_client, keys.kind_index("demo"))
    assert job_id in members(redis_client, keys.owner_index("alice"))
    created = redis_client.zscore(keys.state_index("queued"), job_id)
    store.apply(ProgressUpdate(job_id, 10, "running"))
    assert job_id not in members(redis_client, keys.state_index("queued"))
    assert redis_client.zscore(keys.state_index("running"), job_id) == created
    store.finish(job_id, "failed", "boom")
    assert members(redis_client, keys.state_index("running")) == set()
    assert job_id in members(redis_client, keys.state_index("failed"))
    store.reset(job_id, ("failed",))
    assert job_id not in members(redis_client, keys.state_index("failed"))
    assert redis_client.zscore(keys.state_index("queued"), job_id) == created
    store.discard(job_id)
    for key in (keys.state_index("queued"), keys.kind_index("demo"), keys.owner_index("alice")):
        assert job_id not in members(redis_client, key)


def test_no_owner_index_for_an_empty_owner(store: JobStore, redis_client: redis.Redis) -> None:
    store.create(new_id(), kind="demo")
    assert not redis_client.keys(keys.owner_index("*"))


def test_filters_intersect_and_skip_expired(store: JobStore, query: JobQuery,
                                            redis_client: redis.Redis) -> None:
    a, b, c, d = (new_id() for _ in range(4))
    store.create(a, kind="demo", owner="alice")
    store.create(b, kind="csv_import", owner="alice")
    store.create(c, kind="demo", owner="bob")
    store.create(d, kind="demo", owner="alice")
    store.apply(ProgressUpdate(a, 50, "running", message="Halfway THERE"))
    store.apply(ProgressUpdate(d, 50, "running", message="elsewhere"))
    found = query.page(JobFilter(state="running", kind="demo", owner="alice"))
    assert [j.job_id for j in found.jobs] == [d, a] and found.next is None
    assert [j.job_id for j in query.page(JobFilter(q="there")).jobs] == [a]
    assert [j.job_id for j in query.page(JobFilter(q="WHERE")).jobs] == [d]
    assert [j.job_id for j in query.page(JobFilter(q="here")).jobs] == [d, a]
    assert [j.job_id for j in query.page(JobFilter(kind="demo", owner="bob")).jobs] == [c]
    redis_client.delete(keys.job_key(d))  # as if it had expired
    assert [j.job_id for j in query.page(JobFilter(owner="alice")).jobs] == [b, a]
    assert query.count(JobFilter(owner="alice")) == 2
    assert query.count(JobFilter()) == 3


def test_expired_entries_are_trimmed_from_the_indexes(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client, ttl=60)
    old, new = new_id(), new_id()
    store.create_many([(old, "demo", "o", time.time() - 120), (new, "demo", "o", time.time())])
    for key in (keys.state_index("queued"), keys.kind_index("demo"), keys.owner_index("o"),
                keys.RECENT_JOBS):
        assert members(redis_client, key) == {new}


def test_paging_is_stable_while_jobs_change_and_ties_are_kept(store: JobStore,
                                                              query: JobQuery) -> None:
    now = time.time()
    ids = sorted(new_id() for _ in range(450))
    # 250 jobs share one creation time (more than a script chunk), the rest are older.
    jobs = [(job_id, "demo", "", now if i < 250 else now - i) for i, job_id in enumerate(ids)]
    store.create_many(jobs)
    seen: list[str] = []
    cursor = None
    while True:
        page = query.page(JobFilter(state="queued"), cursor, limit=70)
        seen.extend(j.job_id for j in page.jobs)
        if page.jobs:  # a job of the next page changes state meanwhile: not lost, not repeated
            store.create(new_id(), kind="demo")
        cursor = page.next
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 450
    assert set(seen) == set(ids)


def test_bad_filters_and_cursors() -> None:
    with pytest.raises(BadFilter):
        JobFilter.parse({"state": "sleeping"})
    with pytest.raises(BadFilter):
        JobFilter.parse({"q": "x" * 101})
    for bad in ("nope", "1.5~not-a-uuid", "nan~" + new_id(), "1.5"):
        with pytest.raises(BadFilter):
            parse_cursor(bad)
    assert parse_cursor(None) == ("+inf", "")


def test_fifty_thousand_jobs_filter_and_page(store: JobStore, query: JobQuery,
                                             redis_client: redis.Redis) -> None:
    now = time.time()
    kinds = ("demo", "csv_import", "highlight")
    jobs = [(new_id(), kinds[i % 3], f"owner{i % 10}", now - i * 0.001) for i in range(50_000)]
    store.create_many(jobs, chunk=2000)
    failing = [job_id for job_id, kind, owner, _ in jobs[:2000] if owner == "owner3"]
    for job_id in failing:
        store.finish(job_id, "failed", f"disk full on {job_id[:4]}")
    flt = JobFilter(state="failed", kind="demo", owner="owner3")
    expected = [job_id for job_id, kind, owner, _ in jobs[:2000]
                if owner == "owner3" and kind == "demo"]
    assert query.count(flt) == len(expected)
    assert query.count(JobFilter(kind="csv_import")) == len([j for j in jobs if j[1] == "csv_import"])
    got: list[str] = []
    cursor = None
    while True:
        page = query.page(flt, cursor, limit=13)
        got.extend(j.job_id for j in page.jobs)
        cursor = page.next
        if cursor is None:
            break
    assert got == expected  # newest first, every one once
    all_ids: list[str] = []
    cursor = None
    while True:
        page = query.page(JobFilter(), cursor, limit=200)
        all_ids.extend(j.job_id for j in page.jobs)
        cursor = page.next
        if cursor is None:
            break
    assert all_ids == [j[0] for j in jobs]
    # A rare text: the scan is bounded, the page comes back with a cursor to go on.
    needle = failing[-1][:4]
    found = query.ids(JobFilter(q=f"disk full on {needle}"), limit=5, scan=1000)
    assert found[0] == [] and found[1] is not None
    assert failing[-1] in list(query.iter_ids(JobFilter(q=f"disk full on {needle}")))
