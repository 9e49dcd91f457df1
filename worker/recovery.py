"""No job stays "running" when RQ ends it outside the job function.

RQ 3 notices each of these itself; Jobcast only tells the site, through RQ's
public hooks (:meth:`Recovery.worker_kwargs`):

* the job never ran its code (unknown function, failed import, bad arguments):
  the worker's exception handlers (:meth:`Recovery.exception_handler`) report it
  ``failed`` with the reason, unless the job reported its failure itself;
* its work horse was killed (the OOM killer): :meth:`Recovery.horse_killed`
  reports it ``failed`` at once;
* the whole worker was killed: an idle worker's registry cleanup fails the
  expired execution within ``ABANDONED_AFTER`` seconds and the exception
  handlers report it; a worker restarted under the same ``--name`` first waits
  for its predecessor's heartbeat to stop (:func:`take_over_name`).

The one RQ method overridden is ``get_heartbeat_ttl`` (beats of
``ABANDONED_AFTER // 4`` s; checked by ``tests/test_rq_contract.py``). The
bounds and why: docs/worker.md.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import redis
from rq import SimpleWorker, Worker
from rq.exceptions import AbandonedJobError
from rq.job import Job

from shared.callback import ProgressReporter, ReportError
from shared.config import Config
from shared.protocol import FAILED
from shared.rqconf import SERIALIZER
from worker.boundary import make_reporter, was_reported

log = logging.getLogger(__name__)

LOST_MESSAGE = "The worker running this job stopped unexpectedly."


@dataclass(frozen=True)
class Timing:
    """Heartbeat period and execution lease derived from ``ABANDONED_AFTER``."""

    abandoned_after: int

    @property
    def beat(self) -> int:
        """Seconds between heartbeats, and between registry cleanups."""
        return max(1, self.abandoned_after // 4)

    @property
    def lease(self) -> int:
        """Seconds an execution (or a worker) stays alive after its last heartbeat."""
        return max(1, self.abandoned_after - self.beat)


def fail_job(cfg: Config, job_id: str, message: str, retry_seconds: float) -> None:
    """Report ``job_id`` failed through the callback (Redis directly if the site is down)."""
    reporter: ProgressReporter = make_reporter(cfg)
    reporter.retry_seconds = min(retry_seconds, cfg.REPORT_RETRY_SECONDS)
    try:
        reporter.report(job_id, 0, FAILED, message[:500])
    except ReportError as exc:
        log.warning("could not report job %s failed: %s", job_id, exc)


def failure_message(exc_type: type[BaseException] | None, exc: BaseException | None) -> str:
    """What the page shows for a job RQ failed outside the job's own boundary."""
    if exc_type is not None and issubclass(exc_type, AbandonedJobError):
        return LOST_MESSAGE
    name = exc_type.__name__ if exc_type is not None else "Error"
    return f"{name}: {exc}" if exc is not None and str(exc) else name


class Recovery:
    """The hooks Jobcast gives RQ's worker so that the site learns every failure."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.timing = Timing(cfg.ABANDONED_AFTER)

    def worker_kwargs(self, worker_ttl: int | None = None) -> dict[str, Any]:
        """Arguments for RQ's worker: hooks and the intervals ``ABANDONED_AFTER`` needs.

        ``worker_ttl`` (WORKER_TTL) is shortened when needed: an idle worker
        blocks on the queue for ``worker_ttl - 15`` seconds between cleanups.
        """
        beat = self.timing.beat
        return {
            "exception_handlers": [self.exception_handler],
            "work_horse_killed_handler": self.horse_killed,
            "job_monitoring_interval": beat,
            "maintenance_interval": beat,
            "worker_ttl": min(worker_ttl or beat + 15, beat + 15),
        }

    def exception_handler(self, job: Job, exc_type: type[BaseException] | None,
                          exc: BaseException | None, tb: TracebackType | None) -> bool:
        """RQ failed ``job`` (import error, bad arguments, abandoned): report it ``failed``."""
        if exc is not None and was_reported(exc):
            return True  # the job's boundary already reported it
        if job.retries_left:
            return True  # RQ runs it again; that run reports
        message = failure_message(exc_type, exc)
        log.warning("job %s failed outside its code: %s", job.id, message)
        fail_job(self.cfg, job.id, message, retry_seconds=self.timing.beat)
        return True

    def horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        """The job's process died without reporting: report the job failed now."""
        how = (f"killed by signal {os.WTERMSIG(ret_val)}" if ret_val and os.WIFSIGNALED(ret_val)
               else f"exited with status {ret_val}")
        fail_job(self.cfg, job.id, f"The job's process was {how}.",
                 retry_seconds=self.timing.beat)


class JobcastWorker(Worker):
    """RQ's forking worker; an execution lives ``lease`` seconds past a heartbeat."""

    lease: int = 45  # set per worker from ABANDONED_AFTER (see make_worker)

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """Seconds the job's execution counts as alive after this heartbeat."""
        return self.lease


class JobcastSimpleWorker(SimpleWorker):
    """RQ's in-process worker: no heartbeat during a job, so the lease covers its timeout."""

    lease: int = 45
    default_timeout: int = 30

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """The job's timeout plus the lease."""
        timeout = job.timeout if job.timeout and job.timeout > 0 else self.default_timeout
        return int(timeout) + self.lease


def make_worker(cfg: Config, conn: redis.Redis, queue_names: list[str], name: str | None,
                **kwargs: Any) -> Worker | SimpleWorker:
    """The RQ worker for ``cfg.WORKER_CLASS`` with Jobcast's recovery hooks."""
    recovery = Recovery(cfg)
    hooks = recovery.worker_kwargs(kwargs.pop("worker_ttl", None))
    worker: JobcastWorker | JobcastSimpleWorker
    if cfg.WORKER_CLASS == "simple":
        worker = JobcastSimpleWorker(queue_names, connection=conn, name=name,
                                     serializer=SERIALIZER, **hooks, **kwargs)
        worker.default_timeout = cfg.JOB_TIMEOUT
    else:
        worker = JobcastWorker(queue_names, connection=conn, name=name, serializer=SERIALIZER,
                               **hooks, **kwargs)
    worker.lease = recovery.timing.lease
    return worker


def _age(moment: datetime | None) -> float:
    if moment is None:
        return float("inf")
    return (datetime.now(UTC) - moment.replace(tzinfo=moment.tzinfo or UTC)
            ).total_seconds()


def take_over_name(cfg: Config, conn: redis.Redis, name: str) -> None:
    """Before starting as ``name``: wait out a dead predecessor of that name, then bury it.

    A predecessor is alive while it heartbeats (within the lease) or one of
    its executions has not expired. A dead one is marked dead through RQ
    (``register_death``), so RQ lets this worker register; its jobs are then
    failed by the first registry cleanup. A predecessor still alive after
    the wait is left alone (RQ refuses the duplicate name).
    """
    timing = Timing(cfg.ABANDONED_AFTER)
    key = Worker.redis_worker_namespace_prefix + name
    deadline = time.monotonic() + timing.lease + timing.beat
    while True:
        old = Worker.find_by_key(key, connection=conn, serializer=SERIALIZER)
        if old is None or old.death_date is not None:
            return
        alive = (_age(old.last_heartbeat) < timing.lease
                 or bool(old.get_current_executions(refresh=True)))
        if not alive:
            log.warning("worker %s: a previous worker of this name died; taking over", name)
            old.register_death()
            return
        if time.monotonic() > deadline:
            return
        log.info("worker %s: waiting for a previous worker of this name to expire", name)
        time.sleep(0.5)
