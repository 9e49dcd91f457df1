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

Pages: ``POST /jobs/<id>/cancel|retry`` (form buttons, 303 back to the job).
API: ``POST /api/jobs/<id>/cancel|retry``: 200/202 with the state, 404 for an
unknown job, 409 when the job's state does not allow it.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, current_app, jsonify, redirect, url_for

from shared import control
from shared.control import ControlError
from shared.store import JobState
from website.extensions import redis_ext
from website.http.errors import error_response
from website.jobs import batches
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
    """Cancel a queued or running job; the new (cancelled) state (``shared.control``)."""
    cancelled = control.cancel(redis_ext.store, redis_ext.queue, job_id)
    publish(cancelled)
    return cancelled


def retry_job(job_id: str) -> JobState:
    """Run a failed or cancelled job again; its new (queued) state (``shared.control``)."""
    cfg = current_app.config
    state = control.retry(redis_ext.store, redis_ext.queue, job_id,
                          cfg["JOB_TIMEOUT"], cfg["JOB_TTL"])
    publish(state)
    return state


def _run(action: str, job_id: str) -> JobState:
    try:
        state = cancel_job(job_id) if action == "cancel" else retry_job(job_id)
    except ControlError as exc:
        count_control(action, str(exc.status))
        log.info("%s of job %s refused (%s): %s", action, job_id[:64], exc.status, exc.message)
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
