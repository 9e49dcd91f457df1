"""The worker's Redis connection (shared/redisconn.py): its retries add up to
REDIS_RETRY_SECONDS, it warns while it waits, RQ's scheduler inherits it, and a
command sent while a real Redis is down completes once Redis is back."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from rq import Queue
from rq.scheduler import RQScheduler

from shared.config import WORKER, Config
from shared.redisconn import (
    OutageBackoff,
    retries_for,
    wait_before,
    waited_before,
    worker_redis,
)
from shared.rqconf import SERIALIZER
from tests.support import TEST_PROGRESS_TOKEN, RedisServer, wait_until


def worker_config(redis_url: str, seconds: str) -> Config:
    return Config(environ={}, role=WORKER, PROGRESS_TOKEN=TEST_PROGRESS_TOKEN,
                  REDIS_URL=redis_url, REDIS_RETRY_SECONDS=seconds)


@pytest.mark.parametrize("seconds", [0.0, 0.5, 3.0, 60.0, 300.0])
def test_the_waits_add_up_to_the_budget_and_no_more_than_one_wait_beyond(
        seconds: float) -> None:
    retries = retries_for(seconds)
    total = waited_before(retries + 1)
    assert total >= seconds
    assert retries == 0 or waited_before(retries) < seconds
    assert wait_before(1) == 0.05 and wait_before(100) == 1.0


def test_a_reconnect_is_quiet_and_an_outage_warns_after_a_second_then_every_five(
        caplog: pytest.LogCaptureFixture) -> None:
    backoff = OutageBackoff(60)
    caplog.set_level(logging.WARNING, logger="shared.redisconn")
    backoff.compute(1)
    assert caplog.records == []  # one failed try is a stale connection, not an outage
    warned_at = []
    for failures in range(2, retries_for(60) + 1):
        caplog.clear()
        backoff.compute(failures)
        if caplog.records:
            warned_at.append(waited_before(failures))
    assert 1.0 <= warned_at[0] < 2.0
    gaps = [b - a for a, b in zip(warned_at, warned_at[1:], strict=False)]
    assert len(warned_at) >= 12 and all(4.0 <= gap <= 6.0 for gap in gaps), warned_at


def test_the_connection_and_rqs_scheduler_carry_the_retry(redis_url: str) -> None:
    conn = worker_redis(worker_config(redis_url, "30"))
    retry = conn.connection_pool.connection_kwargs["retry"]
    assert retry.get_retries() == retries_for(30)
    assert isinstance(retry._backoff, OutageBackoff)
    # RQ's scheduler (its own process) rebuilds its connection from these kwargs.
    scheduler = RQScheduler([Queue("jobcast", connection=conn, serializer=SERIALIZER)],
                            connection=conn, serializer=SERIALIZER)
    assert scheduler.connection.connection_pool.connection_kwargs["retry"] == retry
    conn.close()


def test_a_command_sent_while_redis_is_down_completes_when_it_is_back(
        log_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer(log_dir, tmp_path / "data").start()
    conn = worker_redis(worker_config(server.url, "60"))
    result: list[object] = []
    try:
        assert conn.set("k", "before")
        server.stop()
        caplog.set_level(logging.WARNING, logger="shared.redisconn")
        sender = threading.Thread(target=lambda: result.append(conn.set("k", "after")),
                                  daemon=True)
        sender.start()
        # longer than redis-py's default retries (about 3 s) would have waited
        wait_until(lambda: any("not answered for 6 s" in r.getMessage() for r in caplog.records),
                   timeout=30, what="6 s of retries")
        assert sender.is_alive() and result == []
        server.start()
        sender.join(timeout=30)
        assert result == [True]
        assert conn.get("k") == b"after"
    finally:
        conn.close()
        server.stop()
