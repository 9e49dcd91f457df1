"""The progress callback, ``POST /api/progress``: its route, and who may send what.

Workers in any language report here (one report, or a batch of up to 100);
each report is authorised by its token (``reports.py``) and applied through
the app's lifecycle, which pushes it to the pages watching the job.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, request

from shared.errors import Invalid, TooLarge
from shared.protocol import APPLIED_HEADER, CALLBACK_MAX_BYTES, CANCEL_HEADER, STATE_HEADER
from shared.signing import parse_bearer
from website.http.access import note_job, request_started
from website.http.answers import error_response
from website.http.body import read_json_body
from website.ops.monitoring import observe_emit
from website.progress.reports import answer_batch, apply_report, token_allows

bp = Blueprint("progress", __name__, url_prefix="/api")
BATCH_MAX_BYTES = 1024 * 1024  # a batch of reports, as JSON text


@bp.post("/progress")
def progress() -> Response | tuple[Response | str, int]:
    """Progress callback for workers: store the update, then push it to watchers.

    One report (a JSON object: 204, or the error status), or a batch (a JSON
    array of up to 100: 200 with one result per report, each applied as if
    it came alone). Who may send each report: ``website/progress/reports.py``.
    """
    token = parse_bearer(request.headers.get("Authorization"))
    if token is None:
        return error_response(401, "missing bearer token")
    body = read_json_body(BATCH_MAX_BYTES)
    if isinstance(body, list):
        return answer_batch(body, token)
    if len(request.get_data(cache=True)) > CALLBACK_MAX_BYTES:
        raise TooLarge(f"a report takes at most {CALLBACK_MAX_BYTES} bytes")
    job_id = body.get("jobId") if isinstance(body, dict) else None
    note_job(job_id)
    if body is None:
        if not token_allows(token, job_id):
            return error_response(401, "invalid token")
        raise Invalid("body must be JSON")
    outcome = apply_report(body, token)
    if outcome.status != 204:
        return error_response(outcome.status, outcome.message)
    if outcome.applied:
        observe_emit(request_started())
    headers = {APPLIED_HEADER: "1" if outcome.applied else "0", STATE_HEADER: outcome.state or ""}
    if outcome.cancel_requested:  # the job was asked to stop (shared/watch.py)
        headers[CANCEL_HEADER] = "1"
    return Response(status=204, headers=headers)


def init_app(app: Flask) -> None:
    """Register the callback."""
    app.register_blueprint(bp)
