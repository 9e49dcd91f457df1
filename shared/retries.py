"""A kind's retries with backoff: when a failed attempt runs again, and how it is queued.

The decision is the store's, in the script that applies the failure, so every
way a failure arrives gets it: a worker's report through the site or its
fallback, RQ's own failures (a killed work horse, an abandoned job), an
external worker's ``failed``, a lapsed lease (``shared/lua/lib/retry.lua``,
included by ``update_job.lua`` and ``sweep_leases.lua``). A failed attempt with
attempts left becomes ``scheduled`` for the next one (``attempt`` + 1, so the
failed attempt's token is refused from then on) with its ``retry_at``, and its
error joins the job's ``failures``. A ``failed`` report with ``retry: false``
(a job function raising :class:`shared.kinds.PermanentFailure`) ends the job.

Then, here: :meth:`Retries.schedule` (a lifecycle reaction) has RQ's scheduler
run ``RETRY_JOB`` (``worker.runner.release_retry``) at ``retry_at``: RQ's
scheduler already keeps due times across restarts and runs each once, across
workers. That small job calls :meth:`Retries.release`, which queues the job
(``shared/lua/queue_retry.lua``) and hands it over like any start, in its
tenant's turn (fair share): RQ's same call again with the new attempt's token,
or its external kind's queue.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from shared.events import Change
from shared.protocol import FAILED, RETRY_JOB, SCHEDULED, new_id
from shared.rqconf import SERIALIZER
from shared.store import JobState, JobStore

log = logging.getLogger(__name__)
# RQ states in which the failed run is still being recorded by its worker.
RQ_BUSY = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED,
           JobStatus.CREATED}
LOOK_AGAIN = 1.0  # seconds: a release finding the failed run not yet recorded tries again


def release_id(job_id: str, attempt: int) -> str:
    """The RQ id of the job that queues ``attempt`` of ``job_id`` (one per attempt)."""
    return f"retry-{attempt}-{job_id}"


class RetriesLifecycle(Protocol):
    """What retries use of the lifecycle that owns them (:class:`shared.lifecycle.Lifecycle`
    is one): its settings, RQ queue and store, and how it queues and reacts."""

    @property
    def cfg(self) -> Any: ...  # the lifecycle's Config

    @property
    def queue(self) -> Queue: ...

    @property
    def store(self) -> JobStore: ...

    def changed(self, states: Iterable[JobState], at: float | None = None,
                created: bool = False) -> None: ...

    def left_queue(self, job_id: str) -> None: ...

    def release(self, job_id: str, kind: str) -> None: ...

    def run_again(self, rq_job: Job, attempt: int, tenant: str) -> None: ...


class Retries:
    """Schedules and releases the retries of one lifecycle's jobs (see the module)."""

    def __init__(self, life: RetriesLifecycle) -> None:
        self.life = life

    def schedule(self, changes: list[Change]) -> None:
        """The reaction: each change the store made a retry (scheduled with a
        ``retry_at``) gets ``RETRY_JOB`` at that time, in one round trip. A job that
        failed while it still held a place in its lane's queue (it failed before a
        worker took it) gives it up, as an ended job does."""
        due = [(change.state.job_id, change.state.attempt, float(change.state.extra["retry_at"]))
               for change in changes
               if change.state.state == SCHEDULED and change.state.extra.get("retry_at")]
        if not due:
            return
        try:
            for job_id, _attempt, _at in due:
                self.life.left_queue(job_id)
            pipe = self.life.queue.connection.pipeline()
            for job_id, attempt, at in due:
                self._release_at(job_id, attempt, at, release_id(job_id, attempt), pipe)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not schedule the retries of %s: %s", [d[0] for d in due], exc)

    def _release_at(self, job_id: str, attempt: int, at: float, rq_id: str, pipe: Any) -> None:
        """Have ``RETRY_JOB`` run for ``attempt`` at ``at`` (at once when due), on ``pipe``."""
        queue, cfg = self.life.queue, self.life.cfg
        release = queue.create_job(RETRY_JOB, args=(job_id, attempt), job_id=rq_id,
                                   result_ttl=0, failure_ttl=cfg.JOB_TTL, ttl=cfg.JOB_TTL)
        if at <= time.time():
            queue.enqueue_job(release, pipeline=pipe)
        else:  # RQ's scheduler keeps whole seconds (cut down): never run it early
            queue.schedule_job(release, datetime.fromtimestamp(math.ceil(at), UTC),
                               pipeline=pipe)
        log.info("job %s: attempt %s due at %.3f", job_id, attempt, at)

    def _again(self, job_id: str, attempt: int, at: float) -> None:
        """Another release of ``attempt`` at ``at`` (an RQ id of its own: this one runs)."""
        pipe = self.life.queue.connection.pipeline()
        self._release_at(job_id, attempt, at, f"retry-{attempt}-{new_id()}", pipe)
        pipe.execute()

    def release(self, job_id: str, attempt: int) -> JobState | None:
        """``attempt`` of ``job_id`` is due: queue it (RQ's same call with the attempt's
        token, or its external kind's queue) in its tenant's turn; its new (queued)
        state, or None when the job no longer waits for that attempt (cancelled)."""
        life = self.life
        job = life.store.get(job_id)
        if (job is None or job.state != SCHEDULED or job.attempt != attempt
                or not job.extra.get("retry_at")):
            log.info("job %s: attempt %s is no longer due (%s)", job_id, attempt,
                     job.state if job else "gone")
            return None
        at = float(job.extra["retry_at"])
        if at > time.time():  # early (another clock): look again at its time
            self._again(job_id, attempt, at)
            return None
        rq_job = None
        if job.extra.get("external") != "1":
            try:
                rq_job = Job.fetch(job_id, connection=life.queue.connection,
                                   serializer=SERIALIZER)
            except NoSuchJobError:
                failed = life.store.finish(job_id, FAILED, "The job could not be retried: its "
                                                           "queue entry has expired.")
                life.changed([failed] if failed else [])
                return None
            if rq_job.get_status(refresh=False) in RQ_BUSY:  # its worker still records the
                self._again(job_id, attempt, time.time() + LOOK_AGAIN)  # failed run
                return None
        state = life.store.queue_retry(job_id, attempt)
        if state is None:  # cancelled in between
            return None
        if rq_job is None:
            life.release(job_id, state.kind)
        else:
            life.run_again(rq_job, attempt, job.extra.get("tenant", ""))
        log.info("job %s: attempt %s queued", job_id, attempt)
        life.changed([state])
        return state
