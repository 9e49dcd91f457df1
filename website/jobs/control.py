"""Job control: cancel a scheduled, waiting, queued or running job, retry a failed or cancelled one.

The lifecycle does both (``Lifecycle.cancel``/``retry``: the store decides
atomically, then RQ or the external queue is told, then the change is pushed
and reacted to). A retry is a new *attempt*: the worker gets a callback token
for it, and the previous attempt's token is refused from then on (409).

Who may do this: only the job's owner (its session, or its ``controlToken`` as
a bearer token) and operators (``OPS_TOKEN``, ``website/http/ownership.py``);
anyone else gets 403 (404 with ``JOB_VISIBILITY=owner``) and nothing changes.

Pages: ``POST /jobs/<id>/cancel|retry`` (form buttons, 303 back to the job). The
operators' job page has its own (``website/ops/jobdetail.py``), through :func:`act`.
API: ``POST /api/jobs/<id>/cancel|retry``: 200/202 with the state, 403 not
allowed, 404 for an unknown job, 409 when the job's state does not allow it.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, redirect, url_for

from shared.config import VISIBILITY_OWNER
from shared.errors import Forbidden, JobcastError, NotFound
from shared.store import JobState
from website.auth.owners import may_control
from website.extensions import core
from website.http.access import loggable
from website.http.answers import status_of
from website.ops.monitoring import count_control

log = logging.getLogger(__name__)
bp = Blueprint("control", __name__)


def authorise(action: str, job_id: str) -> None:
    """Refuse anyone but the owner and operators (404 when jobs are private)."""
    if may_control(job_id.lower()):
        return
    if current_app.config["JOB_VISIBILITY"] == VISIBILITY_OWNER:
        raise NotFound("unknown job id")
    raise Forbidden(f"only the job's owner (the session or API client that created it) or "
                    f"an operator may {action} it")


def act(action: str, job_id: str, operator: bool = False) -> JobState:
    """Cancel or retry ``job_id`` (``action``) for a caller who may (``operator``: an
    operator page let the caller in already), counted in ``/metrics``; its state."""
    try:
        if not operator:
            authorise(action, job_id)
        jobs = core.lifecycle
        state = jobs.cancel(job_id) if action == "cancel" else jobs.retry(job_id)
    except JobcastError as exc:
        count_control(action, str(status_of(exc)))
        log.info("%s of job %s refused (%s): %s", action, loggable(job_id), status_of(exc),
                 exc.message)
        raise
    count_control(action, "ok")
    return state


@bp.post("/jobs/<job_id>/cancel")
def cancel_page(job_id: str) -> Response:
    """Cancel button of the job page: back to the page, which shows "cancelled"."""
    state = act("cancel", job_id)
    return redirect(url_for("jobs.status", job_id=state.job_id), code=303)  # type: ignore[return-value]


@bp.post("/jobs/<job_id>/retry")
def retry_page(job_id: str) -> Response:
    """Retry button of the job page: back to the page, which follows the new run."""
    state = act("retry", job_id)
    return redirect(url_for("jobs.status", job_id=state.job_id), code=303)  # type: ignore[return-value]


@bp.post("/api/jobs/<job_id>/cancel")
def cancel_api(job_id: str) -> Response:
    """Cancel a job: 200 with its state, 404 unknown, 409 already ended."""
    return jsonify(state=act("cancel", job_id).to_payload())


@bp.post("/api/jobs/<job_id>/retry")
def retry_api(job_id: str) -> tuple[Response, int]:
    """Retry a job: 202 with its state, 404 unknown, 409 not failed or cancelled."""
    state = act("retry", job_id)
    status_url = url_for("api.job_state", job_id=state.job_id)
    return jsonify(state=state.to_payload(), status_url=status_url), 202
