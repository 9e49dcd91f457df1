"""``GET /api/jobs``: operators find jobs by state, kind, owner and message text.

Who may: operators (``OPS_TOKEN`` as a bearer token or Basic password; open
when it is unset, like the dashboard); 401 otherwise. Paged newest first by
an opaque ``cursor`` (``next`` in the answer; null at the end), which stays
correct while jobs change state (see ``shared.jobquery``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from shared.jobquery import PAGE_MAX, BadFilter
from shared.protocol import iso_time
from shared.store import JobState
from website.auth.operators import ops_allowed, ops_challenge
from website.extensions import core
from website.http.errors import error_response
from website.ops.dashboard import job_row, read_filter, workers_of

bp = Blueprint("finder", __name__)
TIMES = ("createdAt", "startedAt", "finishedAt")  # epoch seconds in the dashboard's rows


def api_row(job: JobState, worker: str | None) -> dict[str, Any]:
    """A job as ``GET /api/jobs`` lists it: the dashboard's row (``job_row``, whose
    script counts in epoch seconds) with its times as ISO 8601 UTC (null: not yet)."""
    row = job_row(job, worker)
    return {**row, **{name: iso_time(row[name]) if row[name] else None for name in TIMES}}


@bp.get("/api/jobs")
def find_jobs() -> Response | tuple[Response | str, int]:
    """Jobs matching ``?state=&kind=&owner=&q=`` from ``?cursor=``, ``?limit=`` (1..200) at most."""
    if not ops_allowed():
        return ops_challenge()
    try:
        flt, cursor = read_filter(request.args)
    except BadFilter as exc:
        return error_response(400, str(exc))
    raw_limit = request.args.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= PAGE_MAX:
        return error_response(400, f"limit must be a whole number from 1 to {PAGE_MAX}")
    found = core.query.page(flt, cursor, int(raw_limit))
    workers = workers_of([job.job_id for job in found.jobs])
    return jsonify({"filter": flt.to_args(), "next": found.next,
                    "jobs": [api_row(job, workers.get(job.job_id)) for job in found.jobs]})
