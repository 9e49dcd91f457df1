"""A Jobcast worker for the "external" kind in Python, with the jobcast_client library
(clients/python; docs/workers.md). It claims a job, counts to args.n (3 by default)
reporting progress and a log line per step (reports that come fast are sent together),
and ends succeeded with a result. Stops early when the job is cancelled, when its
attempt was superseded, or on SIGTERM (the job is then given back: its lease lapses).
    JOBCAST_URL=http://127.0.0.1:5000 WORKER_TOKEN=... python examples/python_worker.py [name]
ONCE=1: exit after one job.  STEP_DELAY: seconds per step (default 0.2).
"""

from __future__ import annotations

import os
import sys
import time

from jobcast_client import CancelRequested, JobContext, JobLost, Worker, WorkerStopping

NAME = sys.argv[1] if len(sys.argv) > 1 else f"py-{os.getpid()}"
DELAY = float(os.environ.get("STEP_DELAY", "0.2"))


def say(text: str) -> None:
    """One line of the worker's output."""
    print(text, flush=True)  # noqa: T201 - what the example shows, as the shell and Node ones do


def count(ctx: JobContext, n: int = 3, **_: object) -> dict[str, object]:
    """Count to ``n``, a progress report and a log line per step."""
    say(f"claimed {ctx.job_id}")
    try:
        for i in range(1, n + 1):
            ctx.progress(i, total=n, message=f"step {i} of {n}")
            ctx.log(f"step {i} of {n} done by {NAME}")
            time.sleep(DELAY)
    except (CancelRequested, JobLost, WorkerStopping) as stop:
        say(f"stopped {ctx.job_id}: {type(stop).__name__}")
        raise
    say(f"done {ctx.job_id}")
    return {"steps": n, "worker": NAME}


if __name__ == "__main__":
    worker = Worker(os.environ.get("JOBCAST_URL", "http://127.0.0.1:5000"),
                    os.environ["WORKER_TOKEN"], kinds={"external": count}, name=NAME)
    worker.run(max_jobs=1 if os.environ.get("ONCE") else None)
