"""JSON API: start jobs, read their state, and the worker progress callback."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from shared.joblog import is_log_id, read_log
from shared.protocol import (
    APPLIED_HEADER,
    CALLBACK_MAX_BYTES,
    LOG_START,
    STATE_HEADER,
    PayloadError,
    PayloadTooLarge,
    ProgressUpdate,
    is_uuid,
)
from shared.signing import is_authorised, parse_bearer
from shared.store import UnknownJob
from website.extensions import redis_ext
from website.http.access import note_job, request_started
from website.http.body import read_json_body
from website.http.errors import error_response
from website.jobs import batches
from website.jobs.schedule import read_run_at
from website.jobs.services import kinds, start_kind
from website.jobs.submit import Rejected, read_submission
from website.ops.monitoring import observe_emit
from website.realtime.sockets import publish_state

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api")

@bp.get("/kinds")
def list_kinds() -> Response:
    """The job kinds this site starts, with their argument schemas."""
    return jsonify({"kinds": [kind.to_json() for kind in kinds().values()]})


@bp.post("/jobs")
def create_job() -> tuple[Response, int, dict[str, str]] | tuple[Response, int]:
    """Start a job: ``{"kind", "args"}`` (an empty body: the demo); 202 with its id.

    With ``"runAt"`` (ISO 8601 with a zone) or ``"delaySeconds"`` it is
    ``scheduled`` until then (``website/jobs/schedule.py``).

    400 names each bad argument (``fields``); nothing is stored or enqueued then.
    """
    try:
        kind, args, rest = read_submission(kinds())
        run_at = read_run_at(rest, current_app.config["JOB_TTL"])
    except Rejected as exc:
        return jsonify(exc.to_json()), exc.status
    state = start_kind(kind, args, run_at=run_at)
    status_url = url_for("api.job_state", job_id=state.job_id)
    body = {"id": state.job_id, "kind": kind.name, "status_url": status_url,
            "state": state.to_payload()}
    return jsonify(body), 202, {"Location": status_url}


@bp.get("/jobs/<job_id>")
def job_state(job_id: str) -> Response | tuple[Response | str, int]:
    """The job's current state as JSON; 404 for an unknown id."""
    if not is_uuid(job_id):
        return error_response(404, "unknown job id")
    state = redis_ext.store.get(job_id.lower())
    if state is None:
        return error_response(404, "unknown job id")
    return jsonify(state.to_payload())


@bp.get("/jobs/<job_id>/log")
def job_log(job_id: str) -> Response | tuple[Response | str, int]:
    """Lines of the job's log after ``?after=<id>`` (from the start without it).

    ``?limit=`` (1..1000, default 1000) caps the page; ``next`` is the id to ask
    after for the following page, and ``more`` says whether there is one.
    """
    if not is_uuid(job_id) or redis_ext.store.get(job_id.lower()) is None:
        return error_response(404, "unknown job id")
    after = request.args.get("after", LOG_START) or LOG_START
    if not is_log_id(after):
        return error_response(400, "after must be a log line id such as 1700000000000-0")
    try:
        limit = int(request.args.get("limit", "1000"))
    except ValueError:
        return error_response(400, "limit must be a whole number from 1 to 1000")
    if not 1 <= limit <= 1000:
        return error_response(400, "limit must be a whole number from 1 to 1000")
    batch = read_log(redis_ext.client, job_id.lower(), after, limit + 1)
    lines = batch.lines[:limit]
    return jsonify({"jobId": job_id.lower(), "after": after,
                    "lines": [line.to_json() for line in lines],
                    "next": lines[-1].id if lines else after,
                    "more": len(batch.lines) > limit})


@bp.post("/progress")
def progress() -> Response | tuple[Response | str, int]:
    """Progress callback for workers: store the update, then push it to watchers."""
    token = parse_bearer(request.headers.get("Authorization"))
    if token is None:
        return error_response(401, "missing bearer token")
    body = read_json_body(CALLBACK_MAX_BYTES)
    job_id = body.get("jobId") if isinstance(body, dict) else None
    note_job(job_id)
    cfg = current_app.config
    if not is_authorised(cfg["PROGRESS_TOKEN"], cfg["SECRET_KEY"], token,
                         job_id if isinstance(job_id, str) else ""):
        return error_response(401, "invalid token")
    if body is None:
        return error_response(400, "body must be JSON")
    now = time.time()
    try:
        update = ProgressUpdate.from_json(body)
        # A dropped update still learns the job's state: the worker stops once it ended.
        applied, state = redis_ext.store.apply_or_state(update, now=now)
    except PayloadTooLarge as exc:
        return error_response(413, str(exc))
    except PayloadError as exc:
        return error_response(400, str(exc))
    except UnknownJob:
        return error_response(404, "unknown job id")
    if applied is not None:
        publish_state(applied, now)
        batches.after_change(applied)
        observe_emit(request_started())
    return Response(status=204, headers={APPLIED_HEADER: "1" if applied else "0",
                                         STATE_HEADER: state})
