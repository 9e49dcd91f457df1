"""The demo job: progress 10, 20, ... 100, reported through the callback."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from shared.config import Config
from shared.protocol import RUNNING
from worker.reporting import job_boundary, make_reporter

log = logging.getLogger(__name__)

Report = Callable[..., object]


def run_demo(job_id: str, report: Report, delay: float = 0.4,
             sleep: Callable[[float], None] = time.sleep) -> int:
    """Count 10..100 in steps of 10, calling ``report(job_id, progress, state, message)``.

    Returns the number of steps reported.
    """
    steps = 0
    for progress in range(10, 101, 10):
        sleep(delay)
        report(job_id, progress, RUNNING, f"step {progress // 10} of 10")
        steps += 1
    return steps


def demo_job(job_id: str, token: str | None = None) -> str:
    """RQ entry point for the demo job (enqueued as ``worker.jobs.demo_job``)."""
    cfg = Config()
    reporter = make_reporter(cfg, token)
    log.info("job %s started", job_id)
    with job_boundary(job_id, reporter):
        run_demo(job_id, reporter.report, delay=cfg.DEMO_STEP_DELAY)
    log.info("job %s succeeded", job_id)
    return "succeeded"


def noop_job(*args: object, **kwargs: object) -> str:
    """A job that does nothing: a worker liveness probe and the benchmark's trivial job."""
    return "ok"
