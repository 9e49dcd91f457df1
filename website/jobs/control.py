"""Job control: cancel a queued or running job, retry a failed or cancelled one.

The job store decides, atomically: a cancel moves the job to ``cancelled``
before RQ is told anything, so the worker's late reports (even a ``failed``
from a killed work horse) are dropped by the terminal-state rule. Then RQ
cancels the queued job, or the worker running it gets RQ's stop-job command
(the fork worker kills the work horse; a worker that keeps running sees the
``cancelled`` state in its next callback answer and stops). A retry resets the
stored state to ``queued`` (``JobStore.reset``) and enqueues the same function
with the same arguments again. Either way the new state is pushed to the job's
room and to the dashboard.

Only the job's owner (its session, or its ``controlToken`` as a bearer token)
and operators (``OPS_TOKEN``) may do either (``website/jobs/owner.py``);
anyone else gets 403 (404 with ``JOB_VISIBILITY=owner``) and nothing changes.
A retry is a new *attempt*: the worker gets a callback token for it, and the
previous attempt's token is refused from then on (409).

Pages: ``POST /jobs/<id>/cancel|retry`` (form buttons, 303 back to the job).
API: ``POST /api/jobs/<id>/cancel|retry``: 200/202 with the state, 403 not
allowed, 404 for an unknown job, 409 when the job's state does not allow it.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, current_app, jsonify, redirect, url_for
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from shared.config import VISIBILITY_OWNER
from shared.protocol import (
    CANCELLABLE_STATES,
    CANCELLED,
    RETRYABLE_STATES,
    is_uuid,
)
from shared.signing import sign_job_token
from shared.store import InvalidTransition, JobState, UnknownJob
from website.extensions import redis_ext
from website.http.access import loggable
from website.http.errors import error_response
from website.http.ownership import may_control
from website.jobs import batches
from website.jobs.webhooks import job_ended
from website.ops.monitoring import count_control
from website.realtime.sockets import publish_state

log = logging.getLogger(__name__)
bp = Blueprint("control", __name__)

# RQ states in which the job may still run: a retry waits until they are over.
_RQ_ACTIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED,
              JobStatus.SCHEDULED, JobStatus.CREATED}


class ControlError(Exception):
    """A control request that cannot be carried out (HTTP ``status``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _current(job_id: str) -> JobState:
    state = redis_ext.store.get(job_id.lower()) if is_uuid(job_id) else None
    if state is None:
        raise ControlError(404, "unknown job id")
    return state


def publish(state: JobState) -> None:
    """Push a job's new state to its watchers (a highlight job's snippet page too)
    and to the dashboard."""
    publish_state(state, time.time())
    batches.after_change(state)


def cancel_job(job_id: str) -> JobState:
    """Cancel a queued or running job; the new (cancelled) state."""
    job = _current(job_id)
    if job.state not in CANCELLABLE_STATES:
        raise ControlError(409, f"the job is {job.state}: only a queued or running job "
                                "can be cancelled")
    try:
        cancelled = redis_ext.store.finish(job.job_id, CANCELLED, "cancelled on request")
    except UnknownJob:
        raise ControlError(404, "unknown job id") from None
    if cancelled is None:  # it ended in the meantime
        raise ControlError(409, f"the job is {_current(job.job_id).state}: it has already ended")
    if job.extra.get("external") != "1":  # an external worker learns it from its next report
        _stop_in_rq(job.job_id)
    publish(cancelled)
    job_ended(job.job_id)
    log.info("job %s cancelled (was %s)", job.job_id, job.state)
    return cancelled


def _stop_in_rq(job_id: str) -> None:
    """Take the job off the queue, or tell the worker running it to stop."""
    conn = redis_ext.queue.connection
    try:
        rq_job = Job.fetch(job_id, connection=conn)
        status = rq_job.get_status(refresh=False)
        if status == JobStatus.STARTED:
            send_stop_job_command(conn, job_id)
            log.info("job %s: stop-job sent to worker %s", job_id, rq_job.worker_name)
        elif status in _RQ_ACTIVE:
            rq_job.cancel()
            log.info("job %s: removed from the queue", job_id)
    except NoSuchJobError:
        log.info("job %s: no RQ job left to stop", job_id)
    except InvalidJobOperation as exc:  # it moved on meanwhile; the store rules anyway
        log.info("job %s: RQ could not stop it (%s); its reports are dropped", job_id, exc)


def retry_job(job_id: str) -> JobState:
    """Run a failed or cancelled job again; its new (queued) state."""
    job = _current(job_id)
    if job.state not in RETRYABLE_STATES:
        raise ControlError(409, f"the job is {job.state}: only a failed or cancelled job "
                                "can be retried")
    if job.extra.get("external") == "1":
        return _retry_external(job)
    queue = redis_ext.queue
    try:
        rq_job = Job.fetch(job.job_id, connection=queue.connection)
    except NoSuchJobError:
        raise ControlError(409, "the job can no longer be retried: its queue entry "
                                "has expired") from None
    if rq_job.get_status(refresh=False) in _RQ_ACTIVE:
        raise ControlError(409, "the job is still stopping on its worker; "
                                "try again in a moment")
    function, args, kwargs = rq_job.func_name, rq_job.args, rq_job.kwargs
    if not function:
        raise ControlError(409, "the job can no longer be retried: its function is unknown")
    try:
        state = redis_ext.store.reset(job.job_id, RETRYABLE_STATES)
    except UnknownJob:
        raise ControlError(404, "unknown job id") from None
    except InvalidTransition as exc:
        raise ControlError(409, f"the job is {exc.state}: only a failed or cancelled job "
                                "can be retried") from None
    cfg = current_app.config
    if "token" in kwargs:  # the new attempt's callback token; the old one gets 409 from now on
        kwargs = {**kwargs, "token": sign_job_token(cfg["SECRET_KEY"], job.job_id, state.attempt)}
    rq_job.delete(remove_from_queue=True)
    queue.enqueue_call(function, args=args, kwargs=kwargs, job_id=job.job_id,
                       timeout=cfg["JOB_TIMEOUT"], result_ttl=cfg["JOB_TTL"],
                       failure_ttl=cfg["JOB_TTL"])
    publish(state)
    log.info("job %s retried (attempt %s, was %s)", job.job_id, state.attempt, job.state)
    return state


def _retry_external(job: JobState) -> JobState:
    """Retry a job of an external kind: queued again on its kind's queue (attempt + 1)."""
    from website.workers.queues import requeue_external

    try:
        state = redis_ext.store.reset(job.job_id, RETRYABLE_STATES)
    except UnknownJob:
        raise ControlError(404, "unknown job id") from None
    except InvalidTransition as exc:
        raise ControlError(409, f"the job is {exc.state}: only a failed or cancelled job "
                                "can be retried") from None
    requeue_external(state)
    publish(state)
    log.info("job %s retried for external workers (attempt %s)", job.job_id, state.attempt)
    return state


def _authorise(action: str, job_id: str) -> None:
    """Refuse anyone but the owner and operators (404 when jobs are private)."""
    if may_control(job_id.lower()):
        return
    if current_app.config["JOB_VISIBILITY"] == VISIBILITY_OWNER:
        raise ControlError(404, "unknown job id")
    raise ControlError(403, f"only the job's owner (the session or API client that "
                            f"created it) or an operator may {action} it")


def _run(action: str, job_id: str) -> JobState:
    try:
        _authorise(action, job_id)
        state = cancel_job(job_id) if action == "cancel" else retry_job(job_id)
    except ControlError as exc:
        count_control(action, str(exc.status))
        log.info("%s of job %s refused (%s): %s", action, loggable(job_id), exc.status,
                 exc.message)
        raise
    count_control(action, "ok")
    return state


@bp.errorhandler(ControlError)
def _refused(exc: ControlError) -> tuple[Response | str, int]:
    return error_response(exc.status, exc.message)


@bp.post("/jobs/<job_id>/cancel")
def cancel_page(job_id: str) -> Response:
    """Cancel button of the job page: back to the page, which shows "cancelled"."""
    state = _run("cancel", job_id)
    return redirect(url_for("jobs.status", job_id=state.job_id), code=303)  # type: ignore[return-value]


@bp.post("/jobs/<job_id>/retry")
def retry_page(job_id: str) -> Response:
    """Retry button of the job page: back to the page, which follows the new run."""
    state = _run("retry", job_id)
    return redirect(url_for("jobs.status", job_id=state.job_id), code=303)  # type: ignore[return-value]


@bp.post("/api/jobs/<job_id>/cancel")
def cancel_api(job_id: str) -> Response:
    """Cancel a job: 200 with its state, 404 unknown, 409 already ended."""
    return jsonify(state=_run("cancel", job_id).to_payload())


@bp.post("/api/jobs/<job_id>/retry")
def retry_api(job_id: str) -> tuple[Response, int]:
    """Retry a job: 202 with its state, 404 unknown, 409 not failed or cancelled."""
    state = _run("retry", job_id)
    status_url = url_for("api.job_state", job_id=state.job_id)
    return jsonify(state=state.to_payload(), status_url=status_url), 202
