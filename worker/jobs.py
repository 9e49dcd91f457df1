"""The demo job: progress 10, 20, ... 100 in three stages, reported through the callback."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from shared.config import WORKER, Config
from shared.protocol import RUNNING
from worker.reporting import checked_report, job_boundary, make_reporter

log = logging.getLogger(__name__)

Report = Callable[..., object]


def demo_stage(progress: int) -> str:
    """The stage the demo job is in at ``progress``."""
    if progress <= 20:
        return "preparing"
    if progress <= 80:
        return "crunching"
    return "finishing"


def run_demo(job_id: str, report: Report, delay: float = 0.4,
             sleep: Callable[[float], None] = time.sleep) -> int:
    """Count 10..100 in steps of 10: ``report(job_id, progress, state, message, stage)``.

    Returns the number of steps reported.
    """
    steps = 0
    for progress in range(10, 101, 10):
        sleep(delay)
        report(job_id, progress, RUNNING, f"step {progress // 10} of 10", demo_stage(progress))
        steps += 1
    return steps


def demo_job(job_id: str, token: str | None = None) -> str:
    """RQ entry point for the demo job (enqueued as ``worker.jobs.demo_job``)."""
    cfg = Config(role=WORKER)
    reporter = make_reporter(cfg, token)
    log.info("job %s started", job_id)

    def report(job_id: str, progress: int, state: str = RUNNING, message: str = "",
               stage: str = "") -> None:
        checked_report(reporter, job_id, progress, state, message, stage)

    with job_boundary(job_id, reporter):
        run_demo(job_id, report, delay=cfg.DEMO_STEP_DELAY)
    log.info("job %s done", job_id)
    return "done"


def noop_job(*args: object, **kwargs: object) -> str:
    """A job that does nothing: a worker liveness probe and the benchmark's trivial job."""
    return "ok"
