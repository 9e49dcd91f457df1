"""Cancel and retry, on the job store and RQ: the one implementation.

The site's control views (``website/jobs/control.py``) and the bulk kind in
the worker (``shared/kinds/bulk.py``) both call it. The store decides first,
then RQ is told; a retry gets a callback token for its new attempt. Pushing
the new state to open pages, webhooks and ownership checks are the caller's
part. A job of an external kind is cancelled here too (its worker learns it
from its next report); its retry needs the site's per-kind queues, so
:func:`retry` refuses it and the site retries it itself.
"""

from __future__ import annotations

import logging

from rq import Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from shared.protocol import CANCELLABLE_STATES, CANCELLED, RETRYABLE_STATES, is_uuid
from shared.signing import sign_job_token
from shared.store import InvalidTransition, JobState, JobStore, UnknownJob

log = logging.getLogger(__name__)

# RQ states in which the job may still run: a retry waits until they are over.
RQ_ACTIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED,
             JobStatus.SCHEDULED, JobStatus.CREATED}


class ControlError(Exception):
    """A control request that cannot be carried out (HTTP ``status``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def current(store: JobStore, job_id: str) -> JobState:
    """The job's state; :class:`ControlError` 404 for an unknown id."""
    state = store.get(job_id.lower()) if is_uuid(job_id) else None
    if state is None:
        raise ControlError(404, "unknown job id")
    return state


def cancel(store: JobStore, queue: Queue, job_id: str) -> JobState:
    """Cancel a queued or running job; the new (cancelled) state."""
    job = current(store, job_id)
    if job.state not in CANCELLABLE_STATES:
        raise ControlError(409, f"the job is {job.state}: only a queued or running job "
                                "can be cancelled")
    try:
        cancelled = store.finish(job.job_id, CANCELLED, "cancelled on request")
    except UnknownJob:
        raise ControlError(404, "unknown job id") from None
    if cancelled is None:  # it ended in the meantime
        raise ControlError(409, f"the job is {current(store, job.job_id).state}: "
                                "it has already ended")
    if job.extra.get("external") != "1":  # an external worker learns it from its next report
        stop_in_rq(queue, job.job_id)
    log.info("job %s cancelled (was %s)", job.job_id, job.state)
    return cancelled


def stop_in_rq(queue: Queue, job_id: str) -> None:
    """Take the job off the queue, or tell the worker running it to stop."""
    conn = queue.connection
    try:
        rq_job = Job.fetch(job_id, connection=conn)
        status = rq_job.get_status(refresh=False)
        if status == JobStatus.STARTED:
            send_stop_job_command(conn, job_id)
            log.info("job %s: stop-job sent to worker %s", job_id, rq_job.worker_name)
        elif status in RQ_ACTIVE:
            rq_job.cancel()
            log.info("job %s: removed from the queue", job_id)
    except NoSuchJobError:
        log.info("job %s: no RQ job left to stop", job_id)
    except InvalidJobOperation as exc:  # it moved on meanwhile; the store rules anyway
        log.info("job %s: RQ could not stop it (%s); its reports are dropped", job_id, exc)


def retry(store: JobStore, queue: Queue, job_id: str, timeout: int, ttl: int,
          secret: str) -> JobState:
    """Run a failed or cancelled job again (same function and arguments, a callback
    token for the new attempt); its new (queued) state. ``timeout`` and ``ttl`` are
    RQ's job timeout and result TTL. Jobs of external kinds are retried by the site."""
    job = current(store, job_id)
    if job.state not in RETRYABLE_STATES:
        raise ControlError(409, f"the job is {job.state}: only a failed or cancelled job "
                                "can be retried")
    if job.extra.get("external") == "1":
        raise ControlError(409, "a job of an external kind is retried from its page")
    if not secret:
        raise ControlError(409, "a retry here needs SECRET_KEY (to sign the new attempt's token)")
    try:
        rq_job = Job.fetch(job.job_id, connection=queue.connection)
    except NoSuchJobError:
        raise ControlError(409, "the job can no longer be retried: its queue entry "
                                "has expired") from None
    if rq_job.get_status(refresh=False) in RQ_ACTIVE:
        raise ControlError(409, "the job is still stopping on its worker; "
                                "try again in a moment")
    function, args, kwargs = rq_job.func_name, rq_job.args, rq_job.kwargs
    if not function:
        raise ControlError(409, "the job can no longer be retried: its function is unknown")
    try:
        state = store.reset(job.job_id, RETRYABLE_STATES)
    except UnknownJob:
        raise ControlError(404, "unknown job id") from None
    except InvalidTransition as exc:
        raise ControlError(409, f"the job is {exc.state}: only a failed or cancelled job "
                                "can be retried") from None
    if "token" in kwargs:  # the new attempt's callback token; the old one gets 409 from now on
        kwargs = {**kwargs, "token": sign_job_token(secret, job.job_id, state.attempt)}
    rq_job.delete(remove_from_queue=True)
    queue.enqueue_call(function, args=args, kwargs=kwargs, job_id=job.job_id,
                       timeout=timeout, result_ttl=ttl, failure_ttl=ttl)
    log.info("job %s retried (attempt %s, was %s)", job.job_id, state.attempt, job.state)
    return state
