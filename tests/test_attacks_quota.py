"""Issue #26, part 1: one stranger fills the shared storage caps.

Each test replays an attack of the issue against the real site on a real Redis
(an in-process app, or a gunicorn stack with a real worker where a worker
stores something), with quotas made small through the environment, so that on
the code before per-owner quotas existed the attack gets through (the quota
settings are then unknown and ignored) and the test fails. Clients are told
apart by their address: ``REMOTE_ADDR`` for the in-process app, the source
address of the TCP connection (127.0.0.x) for the stack.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient
from rq.job import Job

from shared import apikeys, keys
from shared.config import Config
from shared.quotas import BUCKET_SECONDS, counter_key
from shared.rqconf import SERIALIZER
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import (
    TEST_OPS_TOKEN,
    TEST_PROGRESS_TOKEN,
    TEST_SECRET_KEY,
    TEST_WORKER_TOKEN,
    auth,
    csrf_token_in,
    session_from,
    wait_until,
)
from website import create_app


def quota_app(redis_url: str, **environ: str) -> Flask:
    """The site on ``redis_url`` with ``environ`` (the quota settings) as its environment."""
    cfg = Config(environ={"RATE_LIMIT": "0", **environ}, SECRET_KEY=TEST_SECRET_KEY,
                 PROGRESS_TOKEN=TEST_PROGRESS_TOKEN, WORKER_TOKEN=TEST_WORKER_TOKEN,
                 OPS_TOKEN=TEST_OPS_TOKEN, REDIS_URL=redis_url, ASYNC_MODE="threading")
    app = create_app(cfg)
    app.config["TESTING"] = True
    return app


def client_from(app: Flask, address: str, cookies: bool = False) -> FlaskClient:
    """A test client whose requests come from ``address`` (cookieless, unless ``cookies``)."""
    web = app.test_client(use_cookies=cookies)
    web.environ_base["REMOTE_ADDR"] = address
    return web


def stored_jobs(app: Flask) -> int:
    """How many jobs the store lists."""
    return int(redis.Redis.from_url(app.config["REDIS_URL"]).zcard(keys.RECENT_JOBS))


def batch(web: FlaskClient, size: int, **extra: Any) -> Any:
    """POST a batch of ``size`` empty items of the external kind (the issue's attack)."""
    return web.post("/api/batches", json={"kind": "external", "items": [{}] * size, **extra})


def error_of(resp: Any) -> str:
    """The error message of a JSON refusal."""
    return str(resp.get_json()["error"])


# --- (a) a stranger's batches reach their quota; others still start work ----------------

def test_a_strangers_batches_reach_their_quota_and_others_still_start_jobs(
        redis_url: str) -> None:
    app = quota_app(redis_url, MAX_STORED_JOBS="100", QUOTA_JOBS="20", QUOTA_ADDRESS_FACTOR="2",
                    BATCH_ITEMS_PER_MINUTE="0")
    stranger = client_from(app, "127.0.0.2")
    assert batch(stranger, 30).status_code == 202  # 30 of its address's 40
    for _ in range(5):  # the attack: batch after batch until the store is full
        refused = batch(stranger, 30)
        assert refused.status_code == 429, refused.get_data(as_text=True)
        message = error_of(refused)
        assert "Quota reached" in message and "stored jobs" in message, message
        assert "this address" in message and "try again in" in message, message
        assert refused.get_json()["quota"] == "jobs"  # named for a client to tell it apart
        assert 0 < int(refused.headers["Retry-After"]) <= app.config["JOB_TTL"] + BUCKET_SECONDS
    assert stored_jobs(app) == 30  # nothing of the refused batches was stored

    victim = client_from(app, "127.0.0.3")
    assert victim.post("/api/jobs").status_code == 202
    snippet = victim.post("/api/snippets", json={"source": "print('still here')"})
    assert snippet.status_code == 202, snippet.get_data(as_text=True)
    browser = client_from(app, "127.0.0.4", cookies=True)
    assert [browser.post("/api/jobs").status_code for _ in range(3)] == [202, 202, 202]


def test_snippets_count_against_their_owners_quota(redis_url: str) -> None:
    app = quota_app(redis_url, QUOTA_SNIPPETS="2", QUOTA_ADDRESS_FACTOR="1")
    stranger = client_from(app, "127.0.0.2")
    answers = [stranger.post("/api/snippets", json={"source": f"print({n})"})
               for n in range(3)]
    assert [resp.status_code for resp in answers] == [202, 202, 429]
    assert "stored snippets" in error_of(answers[2])
    assert "Retry-After" in answers[2].headers
    victim = client_from(app, "127.0.0.3")
    assert victim.post("/api/snippets", json={"source": "print(1)"}).status_code == 202


# --- (b) a batch of N counts N, all or nothing --------------------------------------------

def test_a_batch_of_n_counts_n_all_or_nothing(redis_url: str) -> None:
    app = quota_app(redis_url, QUOTA_JOBS="10", QUOTA_ADDRESS_FACTOR="1",
                    BATCH_ITEMS_PER_MINUTE="0")
    web = client_from(app, "127.0.0.2")
    too_big = batch(web, 11)
    assert too_big.status_code == 429
    assert "more than the whole quota" in error_of(too_big)
    assert "Retry-After" not in too_big.headers  # waiting would not help
    assert stored_jobs(app) == 0
    assert batch(web, 7).status_code == 202
    assert batch(web, 4).status_code == 429  # 7 + 4 > 10: none of the 4 is stored
    assert stored_jobs(app) == 7
    assert [web.post("/api/jobs").status_code for _ in range(4)] == [202, 202, 202, 429]
    assert stored_jobs(app) == 10

    other = client_from(app, "127.0.0.3")  # an onComplete counts too: 9 + 1
    assert batch(other, 9, onComplete={"kind": "demo", "args": {}}).status_code == 202
    assert other.post("/api/jobs").status_code == 429


# --- (c) batches have an items-per-minute limit of their own --------------------------------

def test_batches_have_their_own_items_per_minute_limit(redis_url: str) -> None:
    app = quota_app(redis_url, BATCH_ITEMS_PER_MINUTE="100", QUOTA_ADDRESS_FACTOR="1",
                    QUOTA_JOBS="0", RATE_LIMIT="30/minute")
    fast = client_from(app, "127.0.0.2")
    # Bigger than a minute's items and than the per-request limit: taken, as nothing is owed.
    assert batch(fast, 250).status_code == 202
    refused = batch(fast, 1)
    assert refused.status_code == 429
    assert "batch items" in error_of(refused) and "100 a minute" in error_of(refused)
    assert 80 <= int(refused.headers["Retry-After"]) <= 151  # 250 items = 150 s, 60 may be owed
    assert stored_jobs(app) == 250
    assert fast.post("/api/jobs").status_code == 202  # single jobs are not batch items

    other = client_from(app, "127.0.0.3")
    assert batch(other, 60).status_code == 202
    assert batch(other, 40).status_code == 202  # a minute's worth in all
    assert batch(other, 1).status_code == 429


# --- (f) fresh sessions from one address are bounded by the address ---------------------------

def test_fresh_sessions_from_one_address_are_bounded_by_the_address(redis_url: str) -> None:
    app = quota_app(redis_url, QUOTA_JOBS="3", QUOTA_ADDRESS_FACTOR="2")
    answers = []
    for _ in range(6):  # a new browser session each time, four form posts each
        browser = client_from(app, "127.0.0.2", cookies=True)
        token = csrf_token_in(browser.get("/").data)
        answers += [browser.post("/jobs", data={"csrf_token": token, "kind": "demo"})
                    for _ in range(4)]
    statuses = [resp.status_code for resp in answers]
    assert statuses.count(303) == 6, statuses  # the address's 3 x 2, however many sessions
    assert set(statuses) == {303, 429}, statuses
    refusal = next(resp for resp in answers if resp.status_code == 429)
    assert "Quota reached" in refusal.get_data(as_text=True)  # an HTML page for a form
    assert stored_jobs(app) == 6

    # One session alone has an owner's quota (its first post, made before it had an
    # owner id, counts against its address only).
    one = client_from(app, "127.0.0.3", cookies=True)
    statuses = [one.post("/api/jobs").status_code for _ in range(6)]
    assert statuses == [202, 202, 202, 202, 429, 429], statuses
    assert "this session" in error_of(one.post("/api/jobs"))


# --- (g) operators are not limited ----------------------------------------------------------

def test_operators_have_no_quota(redis_url: str) -> None:
    app = quota_app(redis_url, QUOTA_JOBS="2", QUOTA_SNIPPETS="1", QUOTA_ADDRESS_FACTOR="1",
                    BATCH_ITEMS_PER_MINUTE="5")
    stranger = client_from(app, "127.0.0.2")
    assert [stranger.post("/api/jobs").status_code for _ in range(3)] == [202, 202, 429]

    operator = client_from(app, "127.0.0.2")
    operator.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {TEST_OPS_TOKEN}"
    assert [operator.post("/api/jobs").status_code for _ in range(5)] == [202] * 5
    assert batch(operator, 20).status_code == 202
    assert batch(operator, 20).status_code == 202
    snippets = [operator.post("/api/snippets", json={"source": "x = 1"}).status_code
                for _ in range(3)]
    assert snippets == [202, 202, 202]
    conn = redis.Redis.from_url(app.config["REDIS_URL"], decode_responses=True)
    tenants = {conn.hget(keys.job_key(job_id), "tenant")
               for job_id in conn.zrange(keys.RECENT_JOBS, 0, -1)}
    assert tenants == {"a-127.0.0.2", "ops"}


def test_an_api_keys_own_quota_replaces_the_default(redis_url: str) -> None:
    app = quota_app(redis_url, QUOTA_JOBS="2", QUOTA_ADDRESS_FACTOR="1")
    conn = redis.Redis.from_url(redis_url, decode_responses=True)
    key = "jc_test-key-for-quotas"  # stored as shared.apikeys lays a key out
    conn.hset(apikeys.key_record("k1"), mapping={"name": "team", "quota_jobs": "4",
                                                 "hash": hashlib.sha256(key.encode()).hexdigest(),
                                                 "created_at": "1"})
    conn.hset(apikeys.KEY_BY_HASH, hashlib.sha256(key.encode()).hexdigest(), "k1")
    conn.sadd(apikeys.KEY_IDS, "k1")
    program = client_from(app, "127.0.0.2")
    program.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    statuses = [program.post("/api/jobs").status_code for _ in range(5)]
    assert statuses == [202, 202, 202, 202, 429], statuses
    assert "this API key" in error_of(program.post("/api/jobs"))
    neighbour = client_from(app, "127.0.0.2")  # the same address without the key: its own
    assert [neighbour.post("/api/jobs").status_code for _ in range(3)] == [202, 202, 429]


# --- on a real stack: what the worker stores counts -----------------------------------------

QUOTA_BYTES = 2 * 1024 * 1024


def used_bytes(client: redis.Redis, address: str) -> int:
    """What the quota counter of ``address`` (everything anonymous from it) holds."""
    raw = client.hgetall(counter_key(f"a-{address}", "bytes"))
    return sum(int(amount) for bucket, amount in raw.items()
               if (int(bucket) + 1) * BUCKET_SECONDS > time.time())


@pytest.fixture(scope="module")
def quota_stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis, the site and a worker, with a 2 MB byte quota per address."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("quota-redis"), RATE_LIMIT="0",
                          QUOTA_BYTES=str(QUOTA_BYTES), QUOTA_ADDRESS_FACTOR="1")
    yield running
    stop_stack(running)


@pytest.fixture
def text_redis(quota_stack: Stack) -> Iterator[redis.Redis]:
    """A str-decoding client on the stack's Redis."""
    client = redis.Redis.from_url(quota_stack.redis.url, decode_responses=True)
    yield client
    client.close()


def people_csv(rows: int) -> bytes:
    """A CSV file of ``rows`` good rows (name, email)."""
    return ("name,email\n" + "".join(f"person{n:06},p{n:06}@example.org\n"
                                     for n in range(rows))).encode()


def wait_for_state(stack: Stack, job_id: str, state: str, attempt: int = 1) -> dict[str, Any]:
    """The job's state once it is ``state`` (in ``attempt``)."""
    def reached() -> dict[str, Any] | None:
        found = stack.job_state(job_id)
        return found if found["state"] == state else None
    return wait_until(reached, timeout=30, what=f"job {job_id} {state} (attempt {attempt})")


# --- (d) a CSV upload is stored once, out of RQ's kwargs, and goes when the job succeeds -----

def test_a_csv_upload_is_kept_out_of_rq_counted_and_deleted_when_the_job_succeeds(
        quota_stack: Stack, text_redis: redis.Redis) -> None:
    web = session_from("127.0.0.6")
    data = people_csv(20_000)  # about 0.7 MB
    resp = web.post(quota_stack.url + "/api/jobs", timeout=30,
                    data={"kind": "csv_import", "columns": "name, email:email"},
                    files={"file": ("people.csv", data, "text/csv")})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    raw = redis.Redis.from_url(quota_stack.redis.url)
    rq_job = Job.fetch(job_id, connection=raw, serializer=SERIALIZER)
    assert "file" not in rq_job.kwargs["kind_args"], "the upload is in RQ's kwargs"
    assert rq_job.kwargs["uploads"] == ["file"]
    assert (raw.memory_usage(f"rq:job:{job_id}") or 0) < 20_000

    wait_for_state(quota_stack, job_id, "succeeded")
    # the reaction that deletes it runs just after the final state is stored
    wait_until(lambda: not text_redis.exists(keys.job_upload_key(job_id)), timeout=5,
               what="the upload to go with its job's success")
    cleaned = web.get(f"{quota_stack.url}/jobs/{job_id}/files/cleaned.csv", timeout=10)
    assert cleaned.status_code == 200 and len(cleaned.content) == len(data)
    used = used_bytes(text_redis, "127.0.0.6")
    # the cleaned file, the arguments, result and log count; the deleted upload no more
    assert len(cleaned.content) <= used < len(cleaned.content) + 20_000, used


def test_a_failed_csv_job_keeps_its_upload_so_a_retry_runs(quota_stack: Stack,
                                                          text_redis: redis.Redis) -> None:
    web = session_from("127.0.0.7")
    resp = web.post(quota_stack.url + "/api/jobs", timeout=10,
                    data={"kind": "csv_import", "columns": "name, email:email"},
                    files={"file": ("people.csv", b"name,age\nAnn,31\n", "text/csv")})
    assert resp.status_code == 202, resp.text
    job_id, token = resp.json()["id"], resp.json()["controlToken"]
    failed = wait_for_state(quota_stack, job_id, "failed")
    assert "no column 'email'" in failed["message"]
    assert text_redis.exists(keys.job_upload_key(job_id))
    retried = web.post(f"{quota_stack.url}/api/jobs/{job_id}/retry", headers=auth(token),
                       timeout=10)
    assert retried.status_code == 202, retried.text

    def failed_again() -> bool:
        found = text_redis.hmget(keys.job_key(job_id), ["state", "attempt", "message"])
        return found[:2] == ["failed", "2"] and "no column 'email'" in (found[2] or "")
    wait_until(failed_again, timeout=30, what="the retry to run on the kept upload")


def test_a_cancelled_csv_job_gives_its_upload_back_and_cannot_be_retried(
        quota_stack: Stack, text_redis: redis.Redis) -> None:
    web = session_from("127.0.0.8")
    text = people_csv(6_000).decode()  # about 0.2 MB, as JSON
    before = used_bytes(text_redis, "127.0.0.8")
    resp = web.post(quota_stack.url + "/api/jobs", timeout=10, json={
        "kind": "csv_import", "args": {"columns": "name", "file": text}, "delaySeconds": 3600})
    assert resp.status_code == 202, resp.text
    job_id, token = resp.json()["id"], resp.json()["controlToken"]
    assert text_redis.exists(keys.job_upload_key(job_id))
    assert used_bytes(text_redis, "127.0.0.8") - before >= len(text)

    cancelled = web.post(f"{quota_stack.url}/api/jobs/{job_id}/cancel", headers=auth(token),
                         timeout=10)
    assert cancelled.status_code == 200, cancelled.text
    assert not text_redis.exists(keys.job_upload_key(job_id))
    assert used_bytes(text_redis, "127.0.0.8") - before < 1_000  # the upload's bytes came back
    retried = web.post(f"{quota_stack.url}/api/jobs/{job_id}/retry", headers=auth(token),
                       timeout=10)
    assert retried.status_code == 409 and "upload" in retried.json()["error"]


# --- (e) highlighted HTML counts at its real size ------------------------------------------

def test_highlighted_html_counts_against_its_owner_at_its_real_size(
        quota_stack: Stack, text_redis: redis.Redis) -> None:
    web = session_from("127.0.0.5")
    source = "x=1;y=2;\n" * 4600  # 41 KB of source, about 0.9 MB of HTML
    sizes: list[int] = []
    resp = None
    for _ in range(6):  # the attack, until the owner's quota stops it
        resp = web.post(quota_stack.url + "/api/snippets", timeout=10,
                        json={"source": source, "language": "python"})
        if resp.status_code != 202:
            break
        url = quota_stack.url + resp.json()["statusUrl"]
        done = wait_until(lambda u=url: (got := requests.get(u, timeout=10).json())["html"]
                          and got, timeout=30, what="the snippet to be highlighted")
        sizes.append(len(done["html"].encode()))
    assert resp is not None and resp.status_code == 429, sizes
    assert "of stored data" in resp.json()["error"]
    assert sizes and min(sizes) > 20 * len(source)  # the HTML is far bigger than the source
    used = used_bytes(text_redis, "127.0.0.5")
    assert used >= sum(sizes) + len(sizes) * len(source)  # counted at its real size
    assert len(sizes) <= QUOTA_BYTES // sizes[0] + 1  # so the quota held after that many

    other = session_from("127.0.0.9")
    assert other.post(quota_stack.url + "/api/snippets", timeout=10,
                      json={"source": "print(1)"}).status_code == 202
