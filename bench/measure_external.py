"""External workers (8): claim → first report, claims per second, batched reports.

* Claim → first report: a worker long-polls ``POST /api/workers/claim``
  (``wait`` 10 s); the bench queues one external job (straight into Redis, as
  ``POST /api/jobs`` does after its checks) and times until the worker's first
  report of it was answered 204: the wake-up of the waiting claim, the claim's
  answer and one report. One job at a time, 200 times.
* Claims per second: 50 workers waiting in claims on one web process while
  jobs are queued ahead of them; server CPU per claim gives claims per second per
  core (as in (2)).
* Batched reports: 100 updates per request against one update per request,
  closed loop on one web process with 100 clients watching the jobs: server
  CPU per update.
* Idle long-polling workers: 1,000 claims waiting (``wait`` 30 s, each claiming
  again as soon as it is answered) on one web process while the callback →
  client probe of (1) runs against it. Then a lease storm: 2,000 claimed jobs
  whose leases lapse at once, claimed again by those workers.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import requests

from bench import loads
from bench.floors import BareRoundTrip, Floors, LatencyTarget
from bench.measure_web import QUIET
from bench.probe import LatencyProbe
from bench.report import Row, p50_p99
from bench.stack import ROOT_DIR, BenchStack, Web, settle
from bench.webapp import BARE_PATH
from shared import keys
from shared.claimqueue import ExternalQueues
from shared.protocol import new_id
from tests.support import TEST_OPS_TOKEN, TEST_WORKER_TOKEN, wait_until

Log = Callable[[str], None]

CLAIM = LatencyTarget(p50_ms=5, hops=True)
CLAIMS_TARGET = 1000.0
BATCH_TARGET = 5.0
IDLE = LatencyTarget(p99_ms=QUIET.p99_ms, hops=True)  # the idle target of (1)
# The web process of the idle-workers row: room for the waiting claims beside the
# bench's Socket.IO cap (CLAIM_MAX_WAITING must stay below the difference).
IDLE_CLAIMS_WEB = {"WORKER_CONNECTIONS": "12000", "SOCKETIO_MAX_CONNECTIONS": "10500",
                   "CLAIM_MAX_WAITING": "1200"}


def queue_jobs(stack: BenchStack, count: int) -> list[str]:
    """``count`` external jobs, stored and queued as the site does."""
    assert stack.client is not None
    ids = [new_id() for _ in range(count)]
    for job_id in ids:
        stack.store.create(job_id, kind="external", external="1", attempt="1", args="{}")
    pipe = stack.client.pipeline(transaction=False)
    for job_id in ids:
        pipe.rpush(keys.external_queue_key("external"), job_id)
    pipe.publish(keys.EXTERNAL_CHANNEL, "external")
    pipe.execute()
    return ids


def finish_jobs(web: Web, ids: list[str]) -> None:
    """Report each of ``ids`` succeeded (batches of 100, ``WORKER_TOKEN``), so that no lease
    claimed in one row lapses into a later one: a lapsed lease is queued again, and the
    claims of the idle-workers row would take it and measure a storm of requeued jobs."""
    auth = {"Authorization": f"Bearer {TEST_WORKER_TOKEN}"}
    for start in range(0, len(ids), 100):
        batch = [{"jobId": job_id, "progress": 100, "state": "succeeded"}
                 for job_id in ids[start:start + 100]]
        resp = requests.post(web.url + "/api/progress", json=batch, headers=auth, timeout=30)
        resp.raise_for_status()
        results = resp.json()["results"]
        if any(result["status"] != 204 for result in results):
            raise RuntimeError(f"finishing bench jobs: {results}")


def claim_round_trip(stack: BenchStack, floors: Floors, rounds: int, log: Log) -> list[Row]:
    """A long-polling worker: job queued → its first report answered."""
    web = stack.a
    assert stack.client is not None
    queues = ExternalQueues(stack.client)
    session = requests.Session()
    auth = {"Authorization": f"Bearer {TEST_WORKER_TOKEN}"}
    done: dict[str, float] = {}
    got = threading.Condition()
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            resp = session.post(web.url + "/api/workers/claim", headers=auth, timeout=30,
                                json={"kinds": ["external"], "worker": "bench", "wait": 10})
            if resp.status_code != 200:
                continue
            job = resp.json()
            report = session.post(web.url + "/api/progress", timeout=10,
                                  headers={"Authorization": f"Bearer {job['token']}"},
                                  json={"jobId": job["jobId"], "progress": 1,
                                        "state": "running"})
            with got:
                done[job["jobId"]] = time.perf_counter() if report.status_code == 204 else -1
                got.notify_all()

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    samples: list[float] = []
    beside: list[float] = []  # a bare round trip 5 ms before each job, as in (1)
    trip = BareRoundTrip(web.port)
    time.sleep(0.5)  # the worker's first claim is waiting
    for _ in range(rounds):
        job_id = new_id()
        stack.store.create(job_id, kind="external", external="1", attempt="1", args="{}")
        beside.append(trip())
        time.sleep(0.005)
        start = time.perf_counter()
        queues.push(job_id, "external")
        with got:
            got.wait_for(lambda job_id=job_id: job_id in done, timeout=10)  # type: ignore[misc]
        if done.get(job_id, -1) > 0:
            samples.append(done[job_id] - start)
        time.sleep(0.005)  # the worker is back in a waiting claim before the floor and the job
    stop.set()
    trip.close()
    queues.push(new_id(), "external")  # wake the last claim (an unknown job: skipped)
    thread.join(timeout=15)
    finish_jobs(web, list(done))
    local = dataclasses.replace(floors, http=beside)  # the floor of the same seconds
    log(f"  claim → first report: {p50_p99(samples)}; HTTP beside {p50_p99(beside)}")
    return [Row("8", "an external worker long-polling: job queued → its first report "
                     f"answered ({rounds} jobs, one at a time)",
                p50_p99(samples), CLAIM.text(local), CLAIM.met(local, samples) and
                len(samples) == rounds,
                why="about nine hops between processes woken from idle: the queue's "
                    "publish to the web process's listener, the claim's script, its answer "
                    "to the worker (`requests`), the report, its script and its answer",
                floor=local.latency_floor() + " (interleaved)",
                ratio=local.latency_ratio(samples))]


def claims_per_second(stack: BenchStack, jobs: int, log: Log) -> list[Row]:
    """50 waiting workers taking ``jobs`` queued jobs."""
    web = stack.a
    ids = queue_jobs(stack, jobs)
    cpu_before = sum(web.worker_process().cpu_times()[:2])
    out = subprocess.run([sys.executable, "-m", "bench.claimload", "--port", str(web.port),
                          "--token", TEST_WORKER_TOKEN, "--workers", "50", "--jobs",
                          str(jobs), "--wait", "5", "--duration", "120"],
                         cwd=ROOT_DIR, capture_output=True, text=True, check=True, timeout=180)
    cpu = sum(web.worker_process().cpu_times()[:2]) - cpu_before
    result = json.loads(out.stdout)
    finish_jobs(web, ids)
    per_core = result["claimed"] / cpu if cpu else 0.0
    log(f"  claims: {result}; {per_core:.0f}/s per core")
    return [Row("8", "claims with 50 workers waiting, one web process",
                f"{per_core:.0f}/s per core ({1e6 * cpu / max(1, result['claimed']):.0f} µs "
                f"CPU per claim); measured {result['rate']:.0f}/s; {result['claimed']} of "
                f"{jobs} claimed", f"≥ {CLAIMS_TARGET:.0f}/s per core",
                per_core >= CLAIMS_TARGET and result["claimed"] == jobs,
                why="each claim is one HTTP request, one Lua script and a JSON answer with "
                    "the job's token")]


def batched(stack: BenchStack, duration: float, log: Log) -> list[Row]:
    """100 updates per request against one."""
    results = loads.compare(stack, duration, {
        "single": {}, "batched": {"batch": 100, "concurrency": 4}}, log)
    single, many = results["single"], results["batched"]
    per_update_single = single["cpu_us"]
    per_update_batched = many["cpu_us"] / 100
    ratio = per_update_single / per_update_batched if per_update_batched else 0.0
    ok = loads.all_answered(single, "204") and loads.all_answered(many, "200")
    return [Row("8", "batched reports (100 per request) against one report per request",
                f"{1e6 / per_update_batched:.0f} updates/s per core batched "
                f"({per_update_batched:.0f} µs each) against {1e6 / per_update_single:.0f}/s"
                + ("" if ok else f"; ERRORS {single['statuses']} {many['statuses']}"),
                f"≥ {BATCH_TARGET:.0f}× single", ratio >= BATCH_TARGET and ok,
                why="each item is still parsed, checked and pushed on its own (one websocket "
                    "frame per watcher); the token is checked once and the items' scripts run "
                    "in one Redis pipeline",
                floor=f"single {1e6 / per_update_single:.0f}/s per core",
                ratio=f"{ratio:.1f}×")]


def waiting_claims(web: Web) -> int:
    """The web process's ``jobcast_waiting_claims`` gauge."""
    text = requests.get(web.url + "/metrics", timeout=10,
                        headers={"Authorization": f"Bearer {TEST_OPS_TOKEN}"}).text
    found = re.search(r"^jobcast_waiting_claims (\S+)$", text, re.M)
    return int(float(found.group(1))) if found else -1


def idle_claims(stack: BenchStack, floors: Floors, workers: int, probes: int,
                log: Log) -> list[Row]:
    """Callback → client latency while ``workers`` claims wait on the same process."""
    # The web process keeps its default Redis pool (REDIS_POOL_SIZE 100): claims
    # arriving together wait for a connection (website/extensions.py) instead of failing.
    web = stack.start_web("web-claims", **IDLE_CLAIMS_WEB)
    probe = LatencyProbe(web.url, web.port, stack.create_jobs(1)[0])
    alone = probe.samples(probes)  # the same probe before any claim waits: the control
    hold = 300.0  # longer than the measurement: stopped at its end
    load = subprocess.Popen([sys.executable, "-m", "bench.claimload", "--port", str(web.port),
                             "--token", TEST_WORKER_TOKEN, "--workers", str(workers),
                             "--wait", "30", "--duration", str(hold), "--hold"],
                            cwd=ROOT_DIR, stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: waiting_claims(web) >= workers, timeout=30, interval=0.2,
                   what=f"{workers} claims waiting")
        settle(1.0)
        cpu_before, began = sum(web.worker_process().cpu_times()[:2]), time.perf_counter()
        settle(3.0)
        idle_cpu = (sum(web.worker_process().cpu_times()[:2]) - cpu_before) / (
            time.perf_counter() - began)
        samples, beside = probe.paired(probes, floor_path=BARE_PATH)
        during = waiting_claims(web)
        storm = lease_storm(stack, probe, STORM_JOBS, log)
    finally:
        probe.close()
        load.terminate()
        load.communicate(timeout=30)
    local = dataclasses.replace(floors, http=beside)  # the floor of the same seconds
    log(f"  {during} claims waiting: {p50_p99(samples)} (none waiting: {p50_p99(alone)}); "
        f"web CPU while they wait {100 * idle_cpu:.1f}% of a core")
    return [Row("8", f"callback → client latency, 1 client watching, {workers} external "
                     "workers long-polling (wait 30 s) on the same web process",
                f"{p50_p99(samples)}; {during} claims waiting at the end; web process "
                f"{100 * idle_cpu:.1f}% of a core while they wait; the same probe before "
                f"they came: {p50_p99(alone)}",
                IDLE.text(local), IDLE.met(local, samples) and during >= workers,
                why="a waiting claim costs nothing until a job of its kind is queued (then "
                    "one waiter per process wakes, and passes the wake-up on after a take)",
                floor=local.latency_floor() + " (interleaved)",
                ratio=local.latency_ratio(samples)), storm]


STORM_JOBS = 2000


def lease_storm(stack: BenchStack, probe: LatencyProbe, jobs: int, log: Log) -> Row:
    """``jobs`` claimed jobs whose worker vanished, their leases lapsed at once, while
    the idle claims wait: until every job was claimed again, and the probe meanwhile."""
    assert stack.client is not None
    ids = queue_jobs(stack, jobs)  # the waiting claims take them (and claim again)
    wait_until(lambda: stack.client is not None and stack.client.zcard(
        keys.EXTERNAL_LEASES) >= jobs, timeout=60, interval=0.1, what=f"{jobs} jobs claimed")
    settle(1.0)
    began = time.perf_counter()
    stack.client.zadd(keys.EXTERNAL_LEASES, dict.fromkeys(ids, 1.0))  # lapsed long ago
    samples: list[float] = []

    def reclaimed() -> bool:
        samples.extend(probe.samples(5))
        pipe = stack.client.pipeline(transaction=False)  # type: ignore[union-attr]
        for job_id in ids:
            pipe.hget(keys.job_key(job_id), "attempt")
        return all(attempt == "2" for attempt in pipe.execute())

    wait_until(reclaimed, timeout=120, interval=0, what=f"{jobs} jobs claimed again")
    took = time.perf_counter() - began
    finish_jobs(stack.webs[0], ids)  # no lease of this row lapses into a later one
    worst = max(samples) if samples else 0.0
    log(f"  lease storm: {jobs} claimed again after {took:.2f} s; probe meanwhile "
        f"{p50_p99(samples)}, max {worst * 1000:.0f} ms")
    return Row("8", f"{jobs} claimed jobs whose worker vanished, their leases lapsed at once, "
                    "1,000 idle claims waiting on the same web process",
               f"all {jobs} claimed again {took:.2f} s after their leases lapsed; callback → "
               f"client meanwhile {p50_p99(samples)}, max {worst * 1000:.0f} ms",
               why="sweeps requeue 500 lapsed leases a run (each 7-9 ms in Redis); the time "
                   "is the web process claiming every job again for the waiting workers")


NOTE = (
    "External workers (8): `bench/measure_external.py`. Jobs are queued straight into Redis "
    "as `POST /api/jobs` does after its checks, so the rows measure the workers' side. The "
    "round trip is one job at a time with one worker long-polling (`wait` 10 s), each job "
    "queued 5 ms after a bare HTTP round trip (the row's floor, as in (1)); claims per "
    "second use `bench/claimload.py` (raw asyncio HTTP, 50 connections each looping a claim "
    "with `wait` 5 s) over jobs queued ahead; batched reports are closed loop like (2) with "
    "100 clients watching. Idle workers: `bench/claimload.py --hold` keeps 1,000 claims "
    "(`wait` 30 s) waiting on a web process of their own (`WORKER_CONNECTIONS=12000`, "
    "`SOCKETIO_MAX_CONNECTIONS=10500`, `CLAIM_MAX_WAITING=1200`: by default a process lets "
    "at most half of the connections Socket.IO leaves to HTTP wait in claims, "
    "docs/workers.md), counted on its `/metrics` (`jobcast_waiting_claims`), while the "
    "probe of (1) samples callback → client latency one at a time on it, each sample beside "
    "a bare round trip as in (1). Then "
    f"{STORM_JOBS} external jobs are queued (the waiting claims take them) and their lease "
    "deadlines are moved into the past at once, as if the worker fleet had vanished: the row "
    "times until every job was claimed again (attempt 2) and samples the probe meanwhile.")
