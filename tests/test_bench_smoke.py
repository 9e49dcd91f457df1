"""Smoke test of the benchmark's helpers on a small scale (the benchmark itself
runs with ``make bench``, not here)."""

from __future__ import annotations

import asyncio
from typing import Any

import redis

from bench.loadgen import run_load
from bench.measure_workers import snippets
from bench.report import Row, p50_p99, percentile, table
from bench.swarm import Swarm
from bench.wsclient import SocketIOConnection, connect
from shared.protocol import new_id
from shared.store import JobStore
from tests.conftest import Stack
from tests.support import TEST_PROGRESS_TOKEN, wait_until


def test_statistics_and_table() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) in (50.0, 51.0)
    assert percentile(values, 99) == 99.0
    assert p50_p99([0.001, 0.002, 0.003]).startswith("p50 2.00 ms")
    text = table([Row("1", "a | b", "ok", "≤ 1", True), Row("2", "c", "bad", "≤ 1", False)])
    assert "a \\| b" in text and "| yes |" in text and "| NO |" in text


def test_benchmark_snippets_are_the_projects_own_code() -> None:
    sources = snippets()
    assert len(sources) >= 5
    assert all("from __future__ import annotations" in source for source in sources)


def test_raw_client_swarm_and_loadgen_against_the_real_site(stack: Stack) -> None:
    port = int(stack.env["PORT"])
    job_id = stack.start_job()

    async def watch() -> tuple[list[Any], SocketIOConnection]:
        events: list[Any] = []
        done = asyncio.Event()

        def on_event(conn: SocketIOConnection, name: str, data: Any, stamp: float,
                     wall: float) -> None:
            events.append((name, data))
            if data.get("state") == "succeeded":
                done.set()

        conn = await connect("127.0.0.1", port, on_event, {"jobId": job_id})
        await asyncio.wait_for(done.wait(), 30)
        conn.close()
        return events, conn

    events, conn = asyncio.run(watch())
    assert events[-1][1]["progress"] == 100
    assert conn.bytes_in > 0 and conn.bytes_out > 0

    # a job no worker runs, watched by a swarm of 5 while the load generator reports it
    other = new_id()
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    JobStore(client).create(other, kind="bench")
    client.close()
    with Swarm("127.0.0.1", port) as swarm:
        assert swarm.connect(5, [other])["connected"] == 5
        result = asyncio.run(run_load("127.0.0.1", port, "/api/progress", TEST_PROGRESS_TOKEN,
                                      [other], duration=0.5, concurrency=2, tag="probe"))
        assert result["requests"] > 0
        assert result["statuses"] == {"204": result["requests"]}
        stamps: dict[str, list[float]] = {}

        def every_client_got_one() -> bool:
            for message, got in swarm.call("take").items():
                stamps.setdefault(message, []).extend(got)
            return any(len(got) == 5 for got in stamps.values())

        wait_until(every_client_got_one, timeout=10, what="a probe message at all 5 clients")
