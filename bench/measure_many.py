"""Many jobs (9): a batch's pushes, the dashboard filter over a big store, memory per job.

* A batch of trivial jobs (demo, one step, no delay) run by RQ ``SimpleWorker``
  processes, reporting through web A: a Socket.IO client in the room
  ``batch:<id>`` counts the ``batchProgress`` pushes in each 1 s window, and
  the time from the last child's end (its ``finished_at`` as stored) to the
  client's receipt of the final totals.
* Redis is then filled with copies of one of those children (a real finished
  job) through the site's own ``create_job.lua`` in pipelines
  (``bench/fill.py``): the fill time, and the memory per stored job (INFO
  ``used_memory`` before and after over the count; state and indexes, no log
  lines, which live in the job's log stream and are not filled).
* Operators' filters over that store: ``GET /api/jobs`` with ``OPS_TOKEN`` on
  web A, pages of 50 followed by their cursor (from the first page again at
  the end), one request at a time.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

import redis
import requests
import socketio

from bench.fill import Filled, fill
from bench.floors import Floors, LatencyTarget
from bench.report import Row, ms, p50_p99
from bench.stack import BenchStack
from shared import keys
from tests.support import TEST_OPS_TOKEN, auth, wait_until

Log = Callable[[str], None]

FILTER = LatencyTarget(p99_ms=50)
MEMORY_TARGET = 1536  # bytes per stored job
PUSHES_TARGET = 10  # batchProgress pushes in any 1 s window
END_TARGET = 1.0  # s from the last child's end to the client holding the final totals
WORKERS = 2
PAGE = 50
MAXMEMORY = "8gb"  # for the fill only (the stack's Redis runs with 256 MB)


def _windows(times: list[float]) -> list[int]:
    """Pushes per 1 s window from the first one."""
    if not times:
        return []
    counts = [0] * (int(times[-1] - times[0]) + 1)
    for at in times:
        counts[int(at - times[0])] += 1
    return counts


def batch(stack: BenchStack, floors: Floors, size: int,
          log: Log) -> tuple[list[Row], dict[str, str]]:
    """Run a batch of ``size`` trivial jobs; its rows and one child's hash (the fill's model)."""
    web = stack.a
    arrivals: list[tuple[float, dict[str, Any]]] = []
    client = socketio.Client(reconnection=False)
    client.on("batchProgress", lambda data: arrivals.append((time.time(), data)))
    resp = requests.post(web.url + "/api/batches", timeout=300,
                         json={"kind": "demo", "items": [{"steps": 1}] * size})
    resp.raise_for_status()
    batch_id = resp.json()["batchId"]
    # connected once the batch is stored: a connection in no room is closed after
    # SOCKETIO_IDLE_JOIN_SECONDS, and storing a big batch may take longer
    client.connect(web.url, transports=["websocket"], wait_timeout=10)
    try:
        ack = client.call("subscribe", {"batchId": batch_id}, timeout=10)
        assert ack and ack.get("ok"), ack
        wait_until(lambda: arrivals, timeout=10, what="the totals on subscribe")
        subscribed = len(arrivals)
        env = {"WORKER_CLASS": "simple", "DEMO_STEP_DELAY": "0"}
        with contextlib.ExitStack() as workers:
            for n in range(WORKERS):
                workers.enter_context(stack.worker(f"bench-batch-{n}", env=env))
            wait_until(lambda: any(d["complete"] for _, d in arrivals), timeout=60 + size / 10,
                       interval=0.05, what="the batch's final totals")
            time.sleep(0.5)  # anything pushed after the end would count too
    finally:
        client.disconnect()
    assert stack.client is not None
    children = [str(c) for c in stack.client.zrange(keys.batch_index(batch_id), 0, -1)]
    pipe = stack.client.pipeline(transaction=False)
    for child in children:
        pipe.hget(keys.job_key(child), "finished_at")
    ends = [float(v) for v in pipe.execute() if v]
    pushed = arrivals[subscribed:]
    final_at = next(at for at, data in pushed if data["complete"])
    final = next(data for _, data in pushed if data["complete"])
    lag = final_at - max(ends)
    windows = _windows([at for at, _ in pushed])
    busiest = max(windows, default=0)
    template: dict[str, str] = stack.client.hgetall(  # type: ignore[assignment]
        keys.job_key(children[0]))
    log(f"  batch of {size}: {len(pushed)} pushes over {len(windows)} s, busiest 1 s window "
        f"{busiest}; final totals {lag * 1000:.0f} ms after the last end; "
        f"counts {final['counts']}")
    right = final["done"] == size and final["counts"]["succeeded"] == size
    rows = [
        Row("9", f"a batch of {size:,} trivial jobs ({WORKERS} SimpleWorker processes, "
                 "reports through the site): batchProgress pushes a client in "
                 "batch:<id> receives per 1 s window",
            f"busiest window {busiest}, mean {len(pushed) / max(1, len(windows)):.1f}/s "
            f"over {len(windows)} s ({len(pushed)} pushes)"
            + ("" if right else f"; WRONG totals {final['counts']}"),
            f"≤ {PUSHES_TARGET} in every window", busiest <= PUSHES_TARGET and right,
            why="a 100 ms Redis token per batch gates the pushes; the completing change "
                "always pushes",
            ratio=f"{busiest / PUSHES_TARGET:.1f}× the cap"),
        Row("9", "the same batch: from the last child's end (finished_at as stored) to the "
                 "client holding the final totals",
            ms(lag), f"≤ {END_TARGET * 1000:.0f} ms", lag <= END_TARGET,
            why="the completing change is pushed at once, by the callback that stores it",
            floor=floors.latency_floor(), ratio=f"{lag / floors.http_p50:.1f}× HTTP"),
    ]
    return rows, template


def _breakdown(client: redis.Redis) -> str:
    """What one stored job costs: its hash, its timeline, an index entry."""
    some = client.zrevrange(keys.state_index("succeeded"), 0, 0)
    if not some:
        return ""
    job = keys.job_key(str(some[0]))
    hash_bytes = client.memory_usage(job, samples=0) or 0
    timeline = client.memory_usage(job + ":timeline", samples=0) or 0
    encoding = client.object("encoding", job)
    index_bytes = entries = 0
    for key in client.scan_iter(match=keys.INDEX_PREFIX + "*", count=1000):
        index_bytes += client.memory_usage(key, samples=0) or 0
        entries += int(client.zcard(key))
    recent = client.memory_usage(keys.RECENT_JOBS, samples=0) or 0
    entries += int(client.zcard(keys.RECENT_JOBS))
    per_entry = (index_bytes + recent) / max(1, entries)
    return (f"hash {hash_bytes} B ({encoding}, {client.hlen(job)} fields), timeline "
            f"{timeline} B, index entries {per_entry:.0f} B each")


def store_rows(stack: BenchStack, count: int, template: dict[str, str],
               log: Log) -> tuple[list[Row], Filled]:
    """Fill ``count`` jobs; the fill time and the memory per job."""
    assert stack.client is not None
    client = stack.client
    client.config_set("maxmemory", MAXMEMORY)
    filled = fill(stack.store, count, template)
    detail = _breakdown(client)
    log(f"  fill: {count:,} jobs in {filled.seconds:.1f} s; {filled.per_job:.0f} B per job "
        f"({detail})")
    rows = [
        Row("9", f"fill: {count:,} stored jobs through create_job.lua, pipelines of 2,000 "
                 "(the bench process)",
            f"{filled.seconds:.1f} s ({count / filled.seconds:,.0f} jobs/s)"),
        Row("9", "Redis memory per stored job: state and indexes, no log lines (INFO "
                 f"used_memory before and after the fill / {count:,})",
            f"{filled.per_job:,.0f} B ({detail})", f"≤ {MEMORY_TARGET / 1024:.1f} KB",
            filled.per_job <= MEMORY_TARGET,
            why="the job hash dominates; see the breakdown"),
    ]
    return rows, filled


def filters(stack: BenchStack, floors: Floors, filled: Filled, pages: int,
            log: Log) -> list[Row]:
    """Pages of ``GET /api/jobs`` under a few filters over the filled store."""
    session = requests.Session()
    url = stack.a.url + "/api/jobs"
    combos: list[tuple[str, dict[str, str]]] = [
        ("no filter", {}),
        ("state=failed", {"state": "failed"}),
        ("kind=csv_import&state=succeeded", {"kind": "csv_import", "state": "succeeded"}),
        ("owner=<one of 1,000 sessions>", {"owner": filled.owners[0]}),
        ("state=failed&q=timeout", {"state": "failed", "q": "timeout"}),
    ]
    rows = []
    for name, params in combos:
        samples: list[float] = []
        cursor: str | None = None
        shown = 0
        while len(samples) < pages:
            query = dict(params, limit=str(PAGE), **({"cursor": cursor} if cursor else {}))
            start = time.perf_counter()
            resp = session.get(url, params=query, headers=auth(TEST_OPS_TOKEN), timeout=30)
            samples.append(time.perf_counter() - start)
            resp.raise_for_status()
            body = resp.json()
            shown += len(body["jobs"])
            cursor = body["next"]
        log(f"  filter {name}: {p50_p99(samples)}, {shown / len(samples):.0f} jobs a page")
        rows.append(Row("9", f"dashboard filter over {filled.count:,} stored jobs: GET "
                             f"/api/jobs?{name}, pages of {PAGE} by cursor (OPS_TOKEN, web A)",
                        f"{p50_p99(samples)}; {shown / len(samples):.0f} jobs a page",
                        FILTER.text(floors), FILTER.met(floors, samples),
                        why="one Lua walk of the smallest index (ZSCORE on the others) and "
                            "an HGETALL per listed job",
                        floor=floors.latency_floor(), ratio=floors.latency_ratio(samples)))
    return rows


def run(stack: BenchStack, floors: Floors, jobs: int, batch_size: int, pages: int,
        log: Log) -> list[Row]:
    """Section 9: the batch first (on a small store), then the fill and the filters."""
    rows, template = batch(stack, floors, batch_size, log)
    got, filled = store_rows(stack, jobs, template, log)
    rows += got
    rows += filters(stack, floors, filled, pages, log)
    log(f"  load average after section 9: {os.getloadavg()[0]:.2f}")
    return rows


NOTE = (
    "Many jobs (9): `bench/measure_many.py`, `bench/fill.py`. The batch runs first, on a "
    "small store: demo jobs of one step with no delay, two `WORKER_CLASS=simple` worker "
    "processes started after the batch is stored and a python-socketio client subscribed "
    "to it; windows are 1 s from the first push after the subscribe's answer, and the end "
    "is the newest `finished_at` among the children against the client's clock on receipt "
    "of the totals with `complete` (one machine, one clock). Then Redis (maxmemory raised "
    "for the run) is filled with copies of one of those children (states 80% succeeded, "
    "10% failed, 5% cancelled, 3% queued, 2% running; kinds demo, csv_import, highlight; "
    "1,000 owners) through `create_job.lua` in pipelines of 2,000 from the bench process; "
    "memory per job is the `used_memory` difference over the count, with a breakdown from "
    "`MEMORY USAGE`. The recent index keeps `MAX_STORED_JOBS` (100,000) ids, so the "
    "unfiltered walk is over those. Filters: pages of 50, one at a time on a keep-alive "
    "connection, following `next` and starting over at the end.")
