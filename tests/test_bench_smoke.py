"""Smoke test of the benchmark's helpers on a small scale (the benchmark itself
runs with ``make bench``, not here)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import psutil
import pytest
import redis
from rq import Queue

from bench.commands import count_commands
from bench.floors import REFERENCE_HTTP_RTT, Floors, LatencyTarget, http_round_trips
from bench.loadgen import run_load
from bench.loads import combined
from bench.measure_loaded import closed_loop
from bench.measure_workers import snippets
from bench.probe import LatencyProbe
from bench.report import Row, p50_p99, percentile, table
from bench.swarm import Swarm
from bench.wsclient import SocketIOConnection, connect
from shared.protocol import new_id
from shared.rqconf import SERIALIZER
from shared.store import JobStore
from tests.conftest import Stack
from tests.support import TEST_PROGRESS_TOKEN, RedisServer, start_worker, wait_until


def test_statistics_and_table() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) in (50.0, 51.0)
    assert percentile(values, 99) == 99.0
    assert p50_p99([0.001, 0.002, 0.003]).startswith("p50 2.00 ms")
    text = table([Row("1", "a | b", "ok", "≤ 1", True, floor="HTTP 1 ms", ratio="2×"),
                  Row("2", "c", "bad", "≤ 1", False)])
    assert "a \\| b" in text and "| yes |" in text and "| NO |" in text
    assert text.splitlines()[0] == "| # | measurement | result | floor | ratio | target | met |"
    assert "| ok | HTTP 1 ms | 2× | ≤ 1 | yes |" in text


def test_latency_targets_scale_with_the_bare_cpu_of_the_run() -> None:
    target = LatencyTarget(p50_ms=2, p99_ms=5)
    reference = {"cpu_us": 320.0, "rate": 3125.0, "server_cpu": 1.0}  # the reference run
    half_speed = {"cpu_us": 640.0, "rate": 1562.0, "server_cpu": 1.0}
    there = Floors(http=[0.001] * 5, ping=[0.0001] * 5, bare=reference)
    slow = Floors(http=[0.002] * 5, ping=[0.0002] * 5, bare=half_speed)
    assert there.speed == 1.0 and slow.speed == 2.0
    assert target.limits(there) == (0.002, 0.005)
    assert target.limits(slow) == (0.004, 0.010)
    # 3 ms: over the 2 ms target on the reference machine, within it on one half as fast
    samples = [0.003] * 100
    assert not target.met(there, samples)
    assert target.met(slow, samples)
    assert not target.met(slow, [0.003] * 98 + [0.011] * 2)  # the p99 counts too
    assert not target.met(slow, [])
    # stated in ms here and as a ratio to this run's HTTP floor
    assert target.text(slow) == ("p50 ≤ 4.00 ms here = 2.0× HTTP floor (2 ms there), "
                                 "p99 ≤ 10.0 ms here = 5.0× HTTP floor (5 ms there)")
    assert slow.latency_ratio(samples) == "p50 1.5× · p99 1.5× HTTP; p50 15× PING; p50 4.7× bare CPU"


def test_hop_targets_scale_with_the_round_trip_beside_them() -> None:
    # rows of hops between idle processes: the same multiple of the HTTP round trip as
    # on the reference machine (whose round trip is inferred), whatever the bare CPU
    target = LatencyTarget(p50_ms=2, p99_ms=5, hops=True)
    hot = {"cpu_us": 250.0, "rate": 4000.0, "server_cpu": 1.0}
    quick = Floors(http=[REFERENCE_HTTP_RTT] * 5, ping=[0.0001] * 5, bare=hot)
    slow_waking = Floors(http=[2 * REFERENCE_HTTP_RTT] * 5, ping=[0.0001] * 5, bare=hot)
    assert target.limits(quick) == pytest.approx((0.002, 0.005))
    assert target.limits(slow_waking) == pytest.approx((0.004, 0.010))
    samples = [0.003] * 100
    assert not target.met(quick, samples)
    assert target.met(slow_waking, samples)
    # the CPU conversion of the same target ignores the round trip
    assert LatencyTarget(p50_ms=2).limits(slow_waking)[0] == pytest.approx(0.002 * 250 / 320)
    ratio = 2e-3 / REFERENCE_HTTP_RTT
    assert target.text(quick).startswith(
        f"p50 ≤ 2.00 ms here = {ratio:.1f}× HTTP floor (2 ms there ≈ {ratio:.1f}× its round "
        "trip)")
    # the inferred round trip: the reference run's quiet p50 over the ratio seen since
    assert 0.5e-3 < REFERENCE_HTTP_RTT < 0.8e-3


def test_turns_of_one_load_are_added_up() -> None:
    # two turns of one variant: requests, time, statuses and server CPU add up
    first = {"requests": 1000, "seconds": 2.0, "rate": 500.0, "statuses": {"204": 1000},
             "server_cpu": 0.5, "cpu_us": 1000.0, "p50_ms": 1.0, "p99_ms": 3.0}
    second = {"requests": 3000, "seconds": 2.0, "rate": 1500.0,
              "statuses": {"204": 2999, "503": 1}, "server_cpu": 1.0, "cpu_us": 666.7,
              "p50_ms": 2.0, "p99_ms": 2.5}
    both = combined([first, second])
    assert both["requests"] == 4000 and both["seconds"] == 4.0 and both["rate"] == 1000.0
    assert both["statuses"] == {"204": 3999, "503": 1}
    assert both["server_cpu"] == pytest.approx(0.75)  # 3 s of CPU over 4 s
    assert both["cpu_us"] == pytest.approx(750.0)  # 3 s of CPU over 4,000 requests
    assert both["p99_ms"] == 3.0 and both["turns"] == 2
    assert combined([first]) is first


def test_commands_are_counted_by_the_process_that_sent_them(
        redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.ping()  # connected (its handshake is a command too) before the count
    other_process = [sys.executable, "-c", "import redis, sys; "
                     f"redis.Redis(port={redis_server.port}).hset('other', 'a', 1)"]

    def work() -> None:
        client.ping()
        client.eval("redis.call('HSET', KEYS[1], 'a', 1); return redis.call('HGET', "
                    "KEYS[1], 'a')", 1, "mine")
        subprocess.run(other_process, check=True, timeout=30)

    got = count_commands(redis_server.url, redis_server.port, os.getpid(), work)
    client.close()
    assert dict(got.sent) == {"PING": 1, "EVAL": 1}
    assert dict(got.scripted) == {"HSET": 1, "HGET": 1}
    assert got.others >= 1  # the other process's HSET (and its handshake), not ours


def test_benchmark_snippets_are_the_projects_own_code() -> None:
    sources = snippets()
    assert len(sources) >= 5
    assert all("from __future__ import annotations" in source for source in sources)


@pytest.mark.parametrize("module, preloaded", [("worker", True), ("bench.coldworker", False)])
def test_the_cold_worker_is_the_worker_without_preloading(stack: Stack, module: str,
                                                          preloaded: bool) -> None:
    # The product's worker always imports its job modules before it forks; the bench's
    # bench.coldworker skips only that. The job asks its work horse what it inherited.
    conn = redis.Redis.from_url(stack.redis.url)
    queue = Queue(f"preload-{module}", connection=conn, serializer=SERIALIZER)
    job = queue.enqueue("sys.modules.__contains__", "shared.kinds.csv_import")
    env = dict(stack.env, QUEUE_NAME=queue.name, WORKER_CLASS="fork")
    proc = start_worker(env, stack.log_dir, name=f"preload-{module}", module=module)
    try:
        wait_until(lambda: job.get_status(refresh=True) in ("finished", "failed"), timeout=30,
                   what=f"the job on {module}")
        assert job.get_status() == "finished" and job.return_value() is preloaded
    finally:
        proc.stop()
        conn.close()


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
    assert conn.requests == 1  # the websocket upgrade, counted when sent
    assert conn.messages_in >= len(events) + 2  # open, connect ack, the events
    assert conn.messages_out >= 1  # the namespace connect

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


def test_open_loop_probe_and_floors_against_the_real_site(stack: Stack) -> None:
    port = int(stack.env["PORT"])
    job_id = new_id()
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    JobStore(client).create(job_id, kind="bench")
    client.close()
    assert len(http_round_trips(port, "/api/progress", 5, pause=0)) == 5
    probe = LatencyProbe(stack.url, port, job_id)
    try:
        got = probe.open_loop(duration=0.5, interval=0.05)
        # closed loop, each sample beside a round trip sent by the same client code
        samples, beside = probe.paired(4, floor_path="/api/progress")
        assert len(samples) == len(beside) == 4 and all(s > 0 for s in samples + beside)
        # as the reference run sampled under load: one at a time, for a while
        timed = closed_loop(probe, 0.2)
        assert len(timed) >= 2 and all(s > 0 for s in timed)
    finally:
        probe.close()

    # the schedule, not the answers, decides how many probes go out
    assert got.scheduled == 10 and len(got.send_lag) == 10
    assert got.lost == 0 and len(got.latencies) == 10
    assert all(latency > 0 for latency in got.latencies)
    assert got.connections >= 4


def test_web_commands_counted_from_the_web_process(stack: Stack) -> None:
    job_id = new_id()  # queued, nobody runs it: the callback below is applied
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    JobStore(client).create(job_id, kind="bench")
    client.close()
    gunicorn = psutil.Process(stack.web.pid)
    (worker,) = gunicorn.children()
    got = count_commands(stack.redis.url, stack.redis.port, worker.pid, lambda: stack.report(
        {"jobId": job_id, "progress": 1, "state": "running", "message": "counted"}))
    assert got.sent.get("EVALSHA", 0) + got.sent.get("EVAL", 0) >= 1
    assert "HSET" not in got.sent  # the store's HSET runs inside its script
    assert got.scripted.get("HSET", 0) >= 1


def test_the_fill_goes_through_the_sites_script_and_the_filters_find_it(
        redis_client: redis.Redis) -> None:
    from bench.fill import fill
    from bench.measure_many import _windows
    from shared import keys
    from shared.jobquery import JobFilter, JobQuery

    store = JobStore(redis_client)
    template = {"state": "succeeded", "kind": "demo", "owner": "u-template", "batch_id": "b",
                "args": '{"steps": 1}', "started_at": "1.0", "finished_at": "2.0",
                "created_at": "1.0", "updated_at": "2.0", "progress": "100"}
    filled = fill(store, 3000, template)
    assert filled.count == 3000 and filled.per_job > 0 and len(filled.owners) == 1000
    by_state = {s: redis_client.zcard(keys.state_index(s))
                for s in ("succeeded", "failed", "cancelled", "queued", "running")}
    assert sum(by_state.values()) == 3000 and by_state["succeeded"] > by_state["failed"] > 0
    assert redis_client.zcard(keys.kind_index("csv_import")) > 0
    assert redis_client.zcard(keys.owner_index("u-template")) == 0  # each job its own owner
    query = JobQuery(redis_client)
    owned = query.count(JobFilter(owner=filled.owners[0]))
    assert owned == redis_client.zcard(keys.owner_index(filled.owners[0])) > 0
    job = query.page(JobFilter(state="failed", kind="demo"), limit=5).jobs[0]
    assert job.state == "failed" and job.kind == "demo" and job.owner.startswith("u-")
    assert "batch_id" not in job.extra and job.created_at > 2.0
    assert _windows([10.0, 10.05, 10.95, 11.0, 13.2]) == [3, 1, 0, 1]
