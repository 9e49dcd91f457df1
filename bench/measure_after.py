"""Dependencies (12): how soon a waiting job starts once its last dependency succeeded.

Both jobs are of the built-in external kind, so "starts" is exact and free of RQ's
fork: an external worker holds a waiting claim (``wait``) when the dependency's
``succeeded`` report is sent. The time is from the dependency's end as stored (its
``finished_at``) until the claim answers with the waiting job: the lifecycle's
reaction (``shared/after.py``: the waiters' set, the move to ``queued``, fair share's
admission, the external queue) and the claim's wake-up. The whole, from sending the
report, is given beside it.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from bench.floors import Floors
from bench.report import Row
from bench.stack import BenchStack
from tests.support import TEST_WORKER_TOKEN

Log = Callable[[str], None]
TARGET = 3.0  # HTTP round trips
WORKER = {"Authorization": f"Bearer {TEST_WORKER_TOKEN}"}
Answer = list[tuple[float, float, dict[str, Any] | None]]  # (perf_counter, time, claim)
NOTE = (
    "Dependencies (12): a job of the external kind is started `after` another one; an "
    "external worker holds a waiting claim (`wait: 5`) when the other's `succeeded` report "
    "is sent. The time is from the dependency's end as stored (its `finishedAt`) until the "
    "claim answers with the job that waited (the reaction that queues it, the claim's "
    "wake-up); the whole from sending the report is given beside it. One at a time, on one "
    "web process; the floor is the bare HTTP round trip.")


def _claim(session: requests.Session, url: str, wait: float) -> dict[str, Any] | None:
    resp = session.post(f"{url}/api/workers/claim", headers=WORKER, timeout=wait + 10,
                        json={"kinds": ["external"], "worker": "bench-after", "wait": wait})
    resp.raise_for_status()
    return resp.json() if resp.status_code == 200 else None


def _start(session: requests.Session, url: str, body: dict[str, Any]) -> str:
    resp = session.post(f"{url}/api/jobs", json={"kind": "external", **body}, timeout=10)
    resp.raise_for_status()
    return str(resp.json()["id"])


def _report(session: requests.Session, url: str, job_id: str, token: str) -> None:
    resp = session.post(f"{url}/api/progress", timeout=10,
                        headers={"Authorization": f"Bearer {token}"},
                        json={"jobId": job_id, "state": "succeeded"})
    resp.raise_for_status()


def _hold(session: requests.Session, url: str, answer: Answer) -> None:
    got = _claim(session, url, 5)
    answer.append((time.perf_counter(), time.time(), got))


def one(stack: BenchStack, api: requests.Session, worker: requests.Session,
        waiter: requests.Session) -> tuple[float, float]:
    """Seconds from the dependency's stored end, and from sending its report, until
    the waiting job's claim answers."""
    url = stack.a.url
    dep = _start(api, url, {"args": {"bench": "dependency"}})
    got = _claim(worker, url, 0)
    if got is None or got["jobId"] != dep:
        raise RuntimeError(f"the dependency was not the one job queued: {got}")
    job = _start(api, url, {"args": {"bench": "waits"}, "after": [dep]})
    answer: Answer = []
    claiming = threading.Thread(target=_hold, args=(waiter, url, answer))
    claiming.start()
    time.sleep(0.05)  # the claim is waiting in the web process by then (a bench, not a test)
    sent = time.perf_counter()
    _report(worker, url, dep, got["token"])
    claiming.join(10)
    arrived, arrived_at, claimed = answer[0] if answer else (0.0, 0.0, None)
    if claimed is None or claimed["jobId"] != job:
        raise RuntimeError(f"the waiting claim did not get the job that waited: {answer}")
    _report(worker, url, job, claimed["token"])
    ended = stack.store.get(dep)
    if ended is None or ended.finished_at is None:
        raise RuntimeError(f"the dependency {dep} has no end recorded")
    return arrived_at - ended.finished_at, arrived - sent


def waiting_start(stack: BenchStack, floors: Floors, samples: int, log: Log) -> list[Row]:
    """p50 (and p90) of :func:`one` over ``samples``, against ``TARGET`` HTTP round trips."""
    with requests.Session() as api, requests.Session() as worker, \
            requests.Session() as waiter:
        for _ in range(3):  # warm the connections and the web process
            one(stack, api, worker, waiter)
        took = [one(stack, api, worker, waiter) for _ in range(samples)]
    since_end = sorted(end for end, _sent in took)
    since_sent = sorted(sent for _end, sent in took)
    p50, p90 = statistics.median(since_end), since_end[int(len(since_end) * 0.9)]
    whole = statistics.median(since_sent)
    ratio = p50 / floors.http_p50
    log(f"  waiting job started {p50 * 1000:.2f} ms (p50), {p90 * 1000:.2f} ms (p90) after "
        f"its dependency's end was stored; {whole * 1000:.2f} ms after its report was sent")
    return [Row("12", f"a waiting job's start after its last dependency succeeded (from the "
                      f"end stored until an external worker's waiting claim gets it), p50 of "
                      f"{samples}; p90 {p90 * 1000:.1f} ms; from sending the report "
                      f"{whole * 1000:.1f} ms",
                f"{p50 * 1000:.2f} ms", f"≤ {TARGET:.0f}× HTTP round trip", ratio <= TARGET,
                floor=f"HTTP {floors.http_p50 * 1000:.2f} ms", ratio=f"{ratio:.2f}×",
                why="a few Redis round trips (the waiters' set, the job's state, fair "
                    "share's admission, the external queue) and the claim's wake-up over "
                    "Redis pub/sub; on a busy machine each costs a scheduler slice")]
