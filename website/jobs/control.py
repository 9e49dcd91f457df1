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

from shared import control
from shared.config import VISIBILITY_OWNER
from shared.control import ControlError
from shared.protocol import RETRYABLE_STATES
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

__all__ = ["ControlError", "bp", "cancel_job", "publish", "retry_job"]


def publish(state: JobState) -> None:
    """Push a job's new state to its watchers (a highlight job's snippet page too)
    and to the dashboard."""
    publish_state(state, time.time())
    batches.after_change(state)


def cancel_job(job_id: str) -> JobState:
    """Cancel a queued or running job (``shared.control.cancel``), push the new
    state and send the job's webhook; the new (cancelled) state."""
    cancelled = control.cancel(redis_ext.store, redis_ext.queue, job_id)
    publish(cancelled)
    job_ended(cancelled.job_id)
    return cancelled


def retry_job(job_id: str) -> JobState:
    """Run a failed or cancelled job again (``shared.control.retry``; an external
    kind's job goes back on its kind's queue) and push it; its new (queued) state."""
    job = control.current(redis_ext.store, job_id)
    if job.state in RETRYABLE_STATES and job.extra.get("external") == "1":
        return _retry_external(job)
    cfg = current_app.config
    state = control.retry(redis_ext.store, redis_ext.queue, job.job_id, cfg["JOB_TIMEOUT"],
                          cfg["JOB_TTL"], cfg["SECRET_KEY"])
    publish(state)
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
