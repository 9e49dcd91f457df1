"""JSON API: start jobs, read their state, and the worker progress callback."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from shared.joblog import is_log_id, read_log
from shared.protocol import APPLIED_HEADER, CALLBACK_MAX_BYTES, LOG_START, STATE_HEADER, is_uuid
from shared.signing import parse_bearer
from shared.webhooks import delivery_state
from website.extensions import redis_ext
from website.http.access import note_job
from website.http.body import read_json_body
from website.http.errors import error_response
from website.http.ownership import control_token, may_read, request_owner
from website.jobs.schedule import read_run_at
from website.jobs.services import kinds, start_kind
from website.jobs.submit import Rejected, read_submission
from website.jobs.webhooks import read_webhook
from website.workers.reports import BATCH_MAX, apply_batch, apply_report, token_allows

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api")
BATCH_MAX_BYTES = 1024 * 1024  # a batch of reports, as JSON text

@bp.get("/kinds")
def list_kinds() -> Response:
    """The job kinds this site starts, with their argument schemas."""
    return jsonify({"kinds": [kind.to_json() for kind in kinds().values()]})


@bp.post("/jobs")
def create_job() -> tuple[Response, int, dict[str, str]] | tuple[Response, int]:
    """Start a job: ``{"kind", "args"}`` (an empty body: the demo); 202 with its id,
    status URL, state and ``controlToken`` (the bearer token that lets this client
    cancel and retry it).

    With ``"runAt"`` (ISO 8601 with a zone) or ``"delaySeconds"`` it is
    ``scheduled`` until then (``website/jobs/schedule.py``).

    400 names each bad argument (``fields``); nothing is stored or enqueued then.
    """
    try:
        kind, args, rest = read_submission(kinds())
        webhook = read_webhook(rest, kind.name)
        run_at = read_run_at(rest, current_app.config["JOB_TTL"])
    except Rejected as exc:
        return jsonify(exc.to_json()), exc.status
    owner = request_owner(rest.get("owner"))  # "owner" from the body: operators only
    state = start_kind(kind, args, webhook=webhook, run_at=run_at, owner=owner)
    status_url = url_for("api.job_state", job_id=state.job_id)
    body = {"id": state.job_id, "kind": kind.name, "status_url": status_url,
            "state": state.to_payload(), "controlToken": control_token(state.job_id),
            "owner": owner}
    return jsonify(body), 202, {"Location": status_url}


@bp.get("/jobs/<job_id>")
def job_state(job_id: str) -> Response | tuple[Response | str, int]:
    """The job's current state as JSON; 404 for an unknown id (or one the
    caller may not read, with ``JOB_VISIBILITY=owner``)."""
    if not is_uuid(job_id) or not may_read(job_id.lower()):
        return error_response(404, "unknown job id")
    state = redis_ext.store.get(job_id.lower())
    if state is None:
        return error_response(404, "unknown job id")
    body = state.to_payload()
    delivery = delivery_state(state.extra)
    if delivery is not None:
        body["webhook"] = delivery
    return jsonify(body)


@bp.get("/jobs/<job_id>/log")
def job_log(job_id: str) -> Response | tuple[Response | str, int]:
    """Lines of the job's log after ``?after=<id>`` (from the start without it).

    ``?limit=`` (1..1000, default 1000) caps the page; ``next`` is the id to ask
    after for the following page, and ``more`` says whether there is one. Who may
    read the job's state may read its log (``JOB_VISIBILITY``).
    """
    if (not is_uuid(job_id) or not may_read(job_id.lower())
            or redis_ext.store.get(job_id.lower()) is None):
        return error_response(404, "unknown job id")
    after = request.args.get("after", LOG_START)
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
    """Progress callback for workers: store the update, then push it to watchers.

    One report (a JSON object: 204, or the error status), or a batch (a JSON
    array of up to 100: 200 with one result per report, each applied as if
    it came alone). Who may send each report: ``website.workers.reports``.
    """
    token = parse_bearer(request.headers.get("Authorization"))
    if token is None:
        return error_response(401, "missing bearer token")
    body = read_json_body(BATCH_MAX_BYTES)
    if isinstance(body, list):
        return _batch(body, token)
    if len(request.get_data(cache=True)) > CALLBACK_MAX_BYTES:
        return error_response(413, "a report takes at most "
                                   f"{CALLBACK_MAX_BYTES} bytes")
    job_id = body.get("jobId") if isinstance(body, dict) else None
    note_job(job_id)
    if body is None:
        if not token_allows(token, job_id):
            return error_response(401, "invalid token")
        return error_response(400, "body must be JSON")
    outcome = apply_report(body, token)
    if outcome.status != 204:
        return error_response(outcome.status, outcome.message)
    return Response(status=204, headers={APPLIED_HEADER: "1" if outcome.applied else "0",
                                         STATE_HEADER: outcome.state or ""})


def _batch(items: list[object], token: str) -> Response | tuple[Response | str, int]:
    if not 1 <= len(items) <= BATCH_MAX:
        return error_response(400, f"a batch holds 1 to {BATCH_MAX} reports")
    if not all(isinstance(item, dict) for item in items):
        return error_response(400, "each report of a batch must be a JSON object")
    outcomes = apply_batch(items, token)
    if all(outcome.status == 401 for outcome in outcomes):
        return error_response(401, "invalid token")
    return jsonify({"results": [outcome.to_json() for outcome in outcomes]})
