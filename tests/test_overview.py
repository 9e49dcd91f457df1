"""The dashboard's history and overview (shared/history.py, website/ops/overview.py):
written by the store's scripts as jobs end, bounded, read by GET /api/ops/overview
(operators only), and the same numbers in /metrics."""

from __future__ import annotations

import re
import time

import pytest
import redis
from flask.testing import FlaskClient

from shared import history
from shared.history import BINS, BUCKETS, DepthSampler, percentile
from shared.protocol import FAILED, QUEUED, RUNNING, SUCCEEDED, ProgressUpdate
from shared.store import JobStore
from tests.support import TEST_OPS_TOKEN, auth

OPS = auth(TEST_OPS_TOKEN)


def run_job(store: JobStore, job_id: str, kind: str, end: str, started: float,
            took: float, message: str = "") -> None:
    """Create a job, run it from ``started`` and end it ``took`` seconds later."""
    store.create(job_id, kind=kind)
    store.apply(ProgressUpdate(job_id=job_id, state=RUNNING, progress=1), now=started)
    store.apply(ProgressUpdate(job_id=job_id, state=end, progress=50, message=message,
                               retry=False), now=started + took)


def bucket(client: redis.Redis, spec: history.Buckets, at: float) -> dict[str, str]:
    return client.hgetall(f"{spec.prefix}{int(at) - int(at) % spec.width}")  # type: ignore[return-value]


def test_a_job_end_counts_once_in_its_buckets_with_its_duration(
        redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    now = time.time()
    run_job(store, "j1", "demo", SUCCEEDED, now - 2.5, 2.5)
    run_job(store, "j2", "demo", FAILED, now - 0.2, 0.2, message="it broke")
    # a report after the end is dropped: nothing counts twice
    store.apply(ProgressUpdate(job_id="j1", state=FAILED, progress=0), now=now)
    for spec in BUCKETS:
        found = bucket(redis_client, spec, now)
        assert found["s:demo"] == "1" and found["f:demo"] == "1", found
        bins = {name: n for name, n in found.items() if re.match(r"d\d+:", name)}
        assert sorted(bins.values()) == ["1", "1"], found
        assert 0 < redis_client.ttl(f"{spec.prefix}{int(now) - int(now) % spec.width}") <= spec.ttl
    assert history.totals(redis_client) == {("demo", SUCCEEDED): 1, ("demo", FAILED): 1}
    last = history.last_failures(redis_client)["demo"]
    assert last["jobId"] == "j2" and last["message"] == "it broke"
    window = history.read_window(redis_client, "1h", now)
    kind = window.kinds["demo"].as_dict()
    assert (kind[SUCCEEDED], kind[FAILED], kind["failureRate"]) == (1, 1, 0.5)
    assert 0.17 < kind["p50"] < 0.24 and 2.1 < kind["p95"] < 3.0, kind  # a bin is ~19 % wide
    assert sum(window.series[SUCCEEDED]) == 1 and len(window.series[SUCCEEDED]) == 60


def test_a_cancel_of_a_queued_job_counts_without_a_duration(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    store.create("c1", kind="demo")
    store.finish("c1", "cancelled", "no longer wanted")
    found = bucket(redis_client, BUCKETS[0], time.time())
    assert found.get("c:demo") == "1" and not any(re.match(r"d\d+:", n) for n in found), found


def test_the_history_is_bounded_whatever_the_load(redis_client: redis.Redis) -> None:
    """6,000 ends over three hours in every duration: one key per bucket, each with a
    TTL of its window, and a bounded number of fields whatever the durations."""
    store = JobStore(redis_client)
    start = time.time() - 3 * 3600
    kinds = ("demo", "other")
    for i in range(6000):
        took = 10 ** ((i % 60) / 10 - 3)  # 1 ms .. ~800 s
        run_job(store, f"b{i}", kinds[i % 2], SUCCEEDED if i % 3 else FAILED,
                start + i * 1.8, took)
    for spec in BUCKETS:
        names = list(redis_client.scan_iter(f"{spec.prefix}*", count=1000))
        span = (3 * 3600 + 800) // spec.width + 2
        assert len(names) <= span, (spec, len(names))
        for name in names:
            assert 0 < redis_client.ttl(name) <= spec.ttl
            assert redis_client.hlen(name) <= len(kinds) * (3 + BINS) + 1
    assert redis_client.hlen(history.TOTALS) <= len(kinds) * 3
    assert redis_client.hlen(history.LAST_FAILURE) <= len(kinds) * 3


def test_percentiles_come_from_the_bins() -> None:
    assert percentile({}, 0.5) is None
    bins = {0: 50, 40: 45, 60: 5}  # ~1 ms, ~1 s, ~32 s
    assert percentile(bins, 0.5) == round(history.bin_seconds(0), 3)
    assert percentile(bins, 0.95) == round(history.bin_seconds(40), 3)
    assert percentile(bins, 0.99) == round(history.bin_seconds(60), 3)


def test_the_tick_keeps_the_peak_queue_depth(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    sampler = DepthSampler(redis_client)
    now = time.time()
    for i in range(3):
        store.create(f"q{i}", kind="demo")
    assert sampler.sample(now) == 3
    store.finish("q0", "cancelled")
    assert sampler.sample(now) == 2
    for spec in BUCKETS:
        assert bucket(redis_client, spec, now)["depth"] == "3"


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of /metrics' text (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}{{{re.escape(wanted)}}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.fixture
def filled(app: object, redis_url: str) -> JobStore:
    store = JobStore(redis.Redis.from_url(redis_url, decode_responses=True))
    now = time.time()
    for i in range(4):
        run_job(store, f"ok{i}", "demo", SUCCEEDED, now - 5, 1 + i)
    run_job(store, "bad", "demo", FAILED, now - 3, 0.5, message="went wrong")
    store.create("waits", kind="demo")
    return store


def test_only_operators_read_the_overview(client: FlaskClient, filled: JobStore) -> None:
    assert client.get("/api/ops/overview").status_code == 401
    wrong = client.get("/api/ops/overview", headers=auth("not-the-ops-token"))
    assert wrong.status_code == 401
    bad = client.get("/api/ops/overview?window=7d", headers=OPS)
    assert bad.status_code == 400 and bad.get_json()["fields"]["window"], bad.get_json()
    for window in ("1h", "24h"):
        assert client.get(f"/api/ops/overview?window={window}", headers=OPS).status_code == 200


def test_the_overview_agrees_with_metrics(client: FlaskClient, filled: JobStore) -> None:
    body = client.get("/api/ops/overview", headers=OPS).get_json()
    text = client.get("/metrics", headers=OPS).get_data(as_text=True)
    demo = next(k for k in body["kinds"] if k["kind"] == "demo")
    assert (demo[SUCCEEDED], demo[FAILED], demo["queued"]) == (4, 1, 1)
    assert demo["lastFailure"]["message"] == "went wrong" and demo["p95"] >= 3
    for outcome in (SUCCEEDED, FAILED):
        assert metric(text, "jobcast_jobs_ended_total", kind="demo", outcome=outcome) \
            == demo[outcome] == body["ended"][outcome]
    for state, count in body["states"].items():
        assert metric(text, "jobcast_jobs_in_state", state=state) == count
    assert body["states"][QUEUED] == body["queueDepth"] == 1
    day = client.get("/api/ops/overview?window=24h", headers=OPS).get_json()
    assert day["bucketSeconds"] == 900 and len(day["series"]["at"]) == 96
    assert day["ended"] == body["ended"]


def test_the_dashboard_shows_the_overview(client: FlaskClient, filled: JobStore) -> None:
    page = client.get("/dashboard", headers=OPS).get_data(as_text=True)
    assert 'id="overview"' in page and 'data-count-state="succeeded">4<' in page
    assert re.search(r'<tr data-kind="demo" data-paused="0">', page)
    assert "went wrong" in page and "/dashboard?kind=demo" in page
    assert 'href="/dashboard?state=failed"' in page


@pytest.mark.parametrize("has_zintercard", [True, False], ids=["redis7", "redis6"])
def test_both_ways_of_counting_a_kinds_live_jobs_agree(
        client: FlaskClient, filled: JobStore, has_zintercard: bool) -> None:
    """Redis 7's ZINTERCARD and, on 6.2 (the embedded server), count_common.lua."""
    if has_zintercard and not version_at_least(filled.client, 7):
        pytest.skip("this Redis has no ZINTERCARD")
    client.application.extensions["jobcast.zintercard"] = has_zintercard
    body = client.get("/api/ops/overview", headers=OPS).get_json()
    demo = next(k for k in body["kinds"] if k["kind"] == "demo")
    assert (demo["queued"], demo["running"]) == (1, 0)


def version_at_least(client: redis.Redis, major: int) -> bool:
    return int(str(client.info("server")["redis_version"]).split(".")[0]) >= major


def test_count_common_counts_what_two_sets_share_up_to_its_limit(
        redis_client: redis.Redis) -> None:
    from shared import scripts

    script = scripts.register(redis_client, "count_common")
    redis_client.zadd("a", {f"m{i}": i for i in range(1200)})
    redis_client.zadd("b", {f"m{i}": i for i in range(0, 3000, 2)})
    calls: list[scripts.Call] = [(["a", "b"], {"limit": 10_000}), (["b", "a"], {"limit": 10_000}),
                                 (["a", "b"], {"limit": 100}), (["a", "none"], {"limit": 10})]
    assert scripts.run_each(redis_client, script, calls) == [[600, 1], [600, 1], [50, 0], [0, 1]]
