"""Retries (11): a retry storm, and the callback p99 of other reports meanwhile.

A web process declaring the external kind ``storm`` (``bench/retry_kinds.py``:
one retry after 1 s) gets a batch of 1,000 of its jobs; the bench claims them
all as an external worker, then reports every one ``failed`` at once (batches
of 100 reports): 1,000 failed attempts to schedule in the same second. One
worker (``WORKER_CLASS=simple``, with RQ's scheduler) queues them again at their
``retryAt``; the bench claims them again and reports them ``succeeded``.

Meanwhile a probe reports progress for another job on that web process, one
callback at a time on a keep-alive connection, interleaved with a bare HTTP round
trip (``POST /api/bench/bare``): the callback's p99 during the storm, against
the bare round trip's p99 in the same seconds (the target), and the callback's
own p99 just before the storm (shown).

Each retry is one small RQ job (``RETRY_JOB``) at its ``retryAt``: with one
worker they run one after the other, RQ's own work per job (about 10 ms here)
more than the release itself (about 3 ms): the first row shows how late that
makes the last of 1,000 simultaneous retries.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable

import requests

from bench.floors import CALLBACK_HEADERS, BareRoundTrip, Floors
from bench.report import Row, ms, p50_p99, percentile
from bench.stack import BenchStack, Web
from bench.webapp import BARE_PATH
from shared import keys
from tests.support import TEST_WORKER_TOKEN

Log = Callable[[str], None]
BACKOFF = 1.0  # seconds: the storm kind's backoff
BATCH = 100  # reports per request (the most a batch takes)
# The callback's p99 during the storm, at most this many times the p99 of a bare round
# trip in the same seconds: a quiet callback costs about 2 bare round trips
# (bench/floors.py QUIET_PER_HTTP_RTT), and the storm's requests delay both alike unless
# its work stalls reports in particular (a lock, Redis held by a long script).
TARGET = 3.0
QUIET_SECONDS = 3.0  # the probe alone before the storm: the callback's own p99 then
NOTE = (
    "Retry storm (11): a web process declaring an external kind that retries once after "
    "1 s gets a batch of jobs of it; the bench claims them all, then reports every one "
    "`failed` at once (batches of 100 reports): each failed attempt is scheduled by the "
    "store's script and its release handed to RQ's scheduler. One worker "
    "(`WORKER_CLASS=simple`) runs the releases at `retryAt`, each queueing its job in its "
    "owner's turn; the bench claims them again and reports them `succeeded`. \"Queued "
    "after retryAt\" is from each job's `retryAt` until its timeline says queued. Meanwhile "
    "a probe reports progress for another job on that web process, one callback at a time "
    "on a keep-alive connection, each followed by a bare round trip (`POST "
    "/api/bench/bare`) on its own connection: the storm's row is the callbacks from the "
    "first `failed` batch until the last job succeeded, against the bare round trips of "
    "the same seconds (the target: a quiet callback costs about two of them), and the "
    "callback's own p99 in the 3 s before the storm.")


class CallbackTrip:
    """Timed progress callbacks for one job, each with a new message (so each is applied
    and pushed), one at a time on a keep-alive connection."""

    def __init__(self, port: int, job_id: str) -> None:
        self.port = port
        self.job_id = job_id
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.n = 0

    def __call__(self) -> float:
        """One callback: seconds from writing it until its answer is read."""
        self.n += 1
        body = json.dumps({"jobId": self.job_id, "progress": 50, "state": "running",
                           "message": f"probe {self.n}"})
        for attempt in (1, 2):
            start = time.perf_counter()
            try:
                self.conn.request("POST", "/api/progress", body=body, headers=CALLBACK_HEADERS)
                resp = self.conn.getresponse()
                resp.read()
                if resp.status != 204:
                    raise RuntimeError(f"the probe's callback answered {resp.status}")
                return time.perf_counter() - start
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class Probe(threading.Thread):
    """Callbacks and bare round trips, in turn, until stopped: ``(when, seconds)`` each."""

    def __init__(self, web: Web, job_id: str) -> None:
        super().__init__(daemon=True)
        self.callback = CallbackTrip(web.port, job_id)
        self.bare = BareRoundTrip(web.port, BARE_PATH)
        self.callbacks: list[tuple[float, float]] = []
        self.bares: list[tuple[float, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.callbacks.append((time.monotonic(), self.callback()))
            time.sleep(0.002)
            self.bares.append((time.monotonic(), self.bare()))
            time.sleep(0.002)

    def between(self, start: float, end: float) -> tuple[list[float], list[float]]:
        """The callback and bare round trips that ended between ``start`` and ``end``."""
        return ([took for at, took in self.callbacks if start <= at <= end],
                [took for at, took in self.bares if start <= at <= end])

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)
        self.bare.close()


class FakeWorker:
    """An external worker over HTTP: claims, and batched reports with ``WORKER_TOKEN``."""

    def __init__(self, web: Web) -> None:
        self.web = web
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {TEST_WORKER_TOKEN}"

    def claim_all(self, count: int, wait: float, deadline: float) -> list[str]:
        """Claim ``count`` storm jobs (one at a time: one waits in the queue per owner)."""
        got: list[str] = []
        while len(got) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(got)} of {count} storm jobs came")
            resp = self.session.post(f"{self.web.url}/api/workers/claim", timeout=wait + 30,
                                     json={"kinds": ["storm"], "worker": "bench",
                                           "wait": wait})
            resp.raise_for_status()
            if resp.status_code == 200:
                got.append(resp.json()["jobId"])
        return got

    def report_all(self, job_ids: list[str], state: str) -> list[str]:
        """Report ``state`` for every job, in batches; the states the answers name."""
        states: list[str] = []
        for start in range(0, len(job_ids), BATCH):
            body = [{"jobId": job_id, "state": state, "message": "the storm"}
                    for job_id in job_ids[start:start + BATCH]]
            resp = self.session.post(f"{self.web.url}/api/progress", json=body, timeout=60)
            resp.raise_for_status()
            states += [str(item["state"]) for item in resp.json()["results"]]
        return states


def _queued_late(stack: BenchStack, job_ids: list[str]) -> list[float]:
    """Per job: seconds from its retryAt (its failure + the backoff) until it was queued
    again (its timeline: ``scheduled <t>`` then ``queued <t>``)."""
    assert stack.client is not None
    pipe = stack.client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.lrange(keys.job_timeline_key(job_id), 0, -1)
    late: list[float] = []
    for entries in pipe.execute():
        marks = [entry.split(" ", 1) for entry in entries]
        due = next(float(at) for name, at in marks if name == "scheduled") + BACKOFF
        queued = [float(at) for name, at in marks if name == "queued" and float(at) >= due - 1]
        late.append(queued[-1] - due)
    return late


def storm(stack: BenchStack, floors: Floors, jobs: int, log: Log) -> list[Row]:
    """The retry storm's rows: how late the retries were queued, and the callback p99."""
    web = stack.start_web("web-retries", JOB_KINDS="bench.retry_kinds")
    worker = FakeWorker(web)
    resp = requests.post(f"{web.url}/api/batches", timeout=120,
                         json={"kind": "storm", "items": [{}] * jobs})
    resp.raise_for_status()
    claimed = worker.claim_all(jobs, 0, time.monotonic() + 120)
    log(f"  {len(claimed)} storm jobs claimed")
    probe = Probe(web, stack.create_jobs(1)[0])
    with stack.worker("bench-retries", web=web, env={"WORKER_CLASS": "simple"}):
        probe.start()
        try:
            time.sleep(QUIET_SECONDS)  # the probe alone: nothing to poll for, it samples
            began = time.monotonic()
            states = worker.report_all(claimed, "failed")
            failed_in = time.monotonic() - began
            if set(states) != {"scheduled"}:
                raise RuntimeError(f"the failed reports left {sorted(set(states))}")
            log(f"  {jobs} failed attempts reported in {failed_in:.2f} s; all scheduled")
            again = worker.claim_all(jobs, 2, time.monotonic() + 180)
            done = worker.report_all(again, "succeeded")
            ended = time.monotonic()
            if set(done) != {"succeeded"}:
                raise RuntimeError(f"the second attempts ended {sorted(set(done))}")
        finally:
            probe.stop()
    log(f"  all {jobs} retried and succeeded {ended - began:.1f} s after the failures")
    late = _queued_late(stack, claimed)
    quiet, _ = probe.between(began - QUIET_SECONDS, began)
    during, bare = probe.between(began, ended)
    quiet_p99, during_p99, bare_p99 = (percentile(quiet, 99), percentile(during, 99),
                                       percentile(bare, 99))
    ratio = during_p99 / bare_p99
    return [
        Row("11", f"a retry storm: {jobs} jobs failing at once (backoff 1 s), one worker: "
                  "each queued again after its retryAt",
            p50_p99(late).replace(" (", " late ("), "",
            floor=f"all retried and done {ended - began:.1f} s after the failures",
            why="informational: RQ's scheduler looks every second, then one worker runs "
                "the releases one by one"),
        Row("11", f"callback p99 during that retry storm (the {jobs} failed reports, "
                  "the releases, the claims and successes)",
            p50_p99(during), f"p99 ≤ {TARGET:.0f}× a bare round trip's p99 in the same seconds",
            ratio <= TARGET,
            floor=f"HTTP floor p50 {ms(floors.http_p50)}; in the same seconds a bare round "
                  f"trip's p99 {ms(bare_p99)}; the callback's p99 before {ms(quiet_p99)}",
            ratio=f"p99 {ratio:.1f}× the bare p99 beside it; "
                  f"{during_p99 / floors.http_p50:.0f}× HTTP floor p50",
            why="the storm's own requests share the web process with the probe: a report "
                "waits behind a batch of 100 failed reports (their scripts and the "
                "releases' scheduling) or a claim"),
    ]
