"""Fair share (10): a victim's wait behind another owner's 2,000-job batch, one worker.

One API client (127.0.0.2) starts a batch of short demo jobs; once the worker
is busy with it, another (127.0.0.3) starts one job of the same kind. The wait
is from the victim's ``POST /api/jobs`` until the worker started its job (the
job's ``started_at``), in job durations: the batch's own pace while it runs
(seconds between its jobs' ends), measured in the same run.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from functools import partial

import requests

from bench.report import Row
from bench.stack import BenchStack
from tests.support import TEST_OPS_TOKEN, session_from, wait_until

Log = Callable[[str], None]
TARGET = 2.0  # job durations
NOTE = (
    "Fair share (10): one API client (from 127.0.0.2) starts a batch of demo jobs "
    "(`steps: 2`, `DEMO_STEP_DELAY=0.05`) and one forking worker runs them; while it does, "
    "another client (127.0.0.3) starts one job of the same kind, five times in turn, each at "
    "a random moment of a batch job's run (an independent arrival). The "
    "wait is from that request until the worker started the job; a job duration is the "
    "batch's pace meanwhile (seconds between its jobs' ends). Before fair share the victim "
    "waited for every job of the batch queued ahead of it: about 2,000 durations. By design "
    "it now waits for the batch's running job to end and its one waiting job: at most 2 "
    "durations plus its own start, about 1.5 on average.")


def _stamp(stack: BenchStack, job_id: str, name: str) -> float | None:
    state = stack.store.get(job_id)
    value = state.extra.get(name) if state is not None else None
    if name == "created_at" and state is not None:
        return state.created_at
    return float(value) if value else None


def victim_wait(stack: BenchStack, batch_jobs: int, victims: int, log: Log) -> list[Row]:
    """The victim's wait, in job durations (median of ``victims``)."""
    web = stack.a
    attacker, victim = session_from("127.0.0.2"), session_from("127.0.0.3")
    resp = attacker.post(f"{web.url}/api/batches", timeout=120,
                         json={"kind": "demo", "items": [{"steps": 2}] * batch_jobs})
    resp.raise_for_status()
    batch_id = resp.json()["batchId"]

    def done() -> int:
        return int(attacker.get(f"{web.url}/api/batches/{batch_id}", timeout=10).json()["done"])

    waits: list[float] = []
    paces: list[float] = []
    with stack.worker("bench-fair", env={"DEMO_STEP_DELAY": "0.05"}):
        wait_until(lambda: done() >= 5, timeout=120, what="the batch to run")
        pace = 0.2
        for _ in range(victims):
            # An independent arrival: at a random moment of the batch's running job (right
            # after the previous victim ended would always be its start: the worst case).
            time.sleep(random.uniform(0, pace))
            before, started = done(), time.monotonic()
            if before > batch_jobs - 20:  # the batch must still be queued behind
                raise RuntimeError(f"the batch ran out ({before} of {batch_jobs} done)")
            job = victim.post(f"{web.url}/api/jobs", timeout=10,
                              json={"kind": "demo", "args": {"steps": 2}}).json()["id"]
            stamp = wait_until(partial(_stamp, stack, job, "started_at"), timeout=300,
                               interval=0.005, what="the victim's job to start")
            begun = float(stamp or 0)
            wait_until(partial(_stamp, stack, job, "finished_at"), timeout=60,
                       what="the victim's job to end")
            seconds, ran = time.monotonic() - started, done() - before
            created = float(_stamp(stack, job, "created_at") or 0)
            waits.append(begun - created)
            paces.append(seconds / max(ran + 1, 1))  # the batch's jobs and the victim's
            pace = statistics.median(paces)
            log(f"  victim waited {begun - created:.3f} s; {ran} batch jobs ran meanwhile")
        requests.post(f"{web.url}/api/batches/{batch_id}/cancel", timeout=30,
                      headers={"Authorization": f"Bearer {TEST_OPS_TOKEN}"})
        wait_until(lambda: attacker.get(f"{web.url}/api/batches/{batch_id}",
                                        timeout=10).json()["complete"],
                   timeout=300, interval=0.2, what="the batch to be cancelled")
    wait, pace = statistics.median(waits), statistics.median(paces)
    ratio = wait / pace
    return [Row("10", f"a victim's wait behind another owner's {batch_jobs}-job batch, "
                      "one worker (median of 5)",
                f"{wait * 1000:.0f} ms", f"≤ {TARGET:.0f} job durations",
                ratio <= TARGET, floor=f"job duration {pace * 1000:.0f} ms",
                ratio=f"{ratio:.2f} job durations",
                why="the victim's job waits for the running job and the batch's one "
                    "waiting job; more than that means the hold-back let more in")]
