"""Operators find jobs by a filter, and cancel or retry all it matches.

Who may: operators only (``OPS_TOKEN`` as a bearer token or Basic password; open
when it is unset, like the dashboard); 401 otherwise.

* ``GET /api/jobs``: jobs by state, kind, owner and message text, paged newest
  first by an opaque ``cursor`` (``next`` in the answer; null at the end), which
  stays correct while jobs change state (see ``shared.jobquery``).
* ``GET /dashboard/bulk?action=cancel|retry&<filter>`` shows how many jobs match
  and asks for confirmation; the form's ``POST /dashboard/bulk`` (CSRF token as
  every form) starts a job of the hidden ``bulk`` kind (``shared/kinds/bulk.py``),
  run by the worker with its own progress, and answers 303 to that job's page.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for

from shared.apikeys import OPERATOR_TENANT
from shared.jobquery import PAGE_MAX, BadFilter, JobFilter
from shared.kinds.bulk import ACTION_STATES, ACTIONS, BULK_KIND
from shared.protocol import STATES, iso_time
from shared.store import JobState
from website.auth.operators import ops_allowed, ops_challenge
from website.extensions import core
from website.http.answers import error_response
from website.ops.dashboard import job_row, read_filter, with_owner_names, workers_of

bp = Blueprint("finder", __name__)
bulk_bp = Blueprint("bulk", __name__)
OPERATOR_OWNER = "operator"  # the owner of the bulk jobs operators start
TIMES = ("createdAt", "startedAt", "finishedAt")  # epoch seconds in the dashboard's rows


def api_row(job: JobState, worker: str | None) -> dict[str, Any]:
    """A job as ``GET /api/jobs`` lists it: the dashboard's row (``job_row``, whose
    script counts in epoch seconds) with its times as ISO 8601 UTC (null: not yet)."""
    row = job_row(job, worker)
    return {**row, **{name: iso_time(row[name]) if row[name] else None for name in TIMES}}


@bp.get("/api/jobs")
def find_jobs() -> Response | tuple[Response | str, int]:
    """Jobs matching ``?state=&kind=&owner=&q=&stalled=1`` from ``?cursor=``, ``?limit=`` (1..200) at most
    (``ownerName``: the name of the API key that started it)."""
    if not ops_allowed():
        return ops_challenge()
    flt, cursor = read_filter(request.args)
    raw_limit = request.args.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= PAGE_MAX:
        return error_response(400, f"limit must be a whole number from 1 to {PAGE_MAX}")
    found = core.query.page(flt, cursor, int(raw_limit))
    workers = workers_of([job.job_id for job in found.jobs])
    return jsonify({"filter": flt.to_args(), "next": found.next,
                    "jobs": with_owner_names([api_row(job, workers.get(job.job_id))
                                              for job in found.jobs])})


def _read(args: Any) -> tuple[str, JobFilter]:
    action = str(args.get("action", "") or "")
    if action not in ACTIONS:
        raise BadFilter(f"action must be one of {', '.join(ACTIONS)}")
    return action, JobFilter.parse(args)


def states_in_words(action: str) -> str:
    """The states ``action`` changes, in the order of ``STATES``, as words:
    ``"scheduled, waiting, queued and running"``."""
    names = [state for state in STATES if state in ACTION_STATES[action]]
    return " and ".join(filter(None, [", ".join(names[:-1]), names[-1]]))


@bulk_bp.get("/dashboard/bulk")
def confirm() -> Response | str | tuple[Response | str, int]:
    """How many jobs the action would touch, and a button to go ahead."""
    if not ops_allowed():
        return ops_challenge()
    action, flt = _read(request.args)
    count = core.query.count(flt)
    return render_template("bulk.html", action=action, flt=flt, count=count,
                           changes=states_in_words(action))


@bulk_bp.post("/dashboard/bulk")
def start() -> Response | tuple[Response | str, int]:
    """Start the bulk job; 303 to its page."""
    if not ops_allowed():
        return ops_challenge()
    action, flt = _read(request.form)
    args = {"action": action, "state": flt.state, "kind": flt.kind, "owner": flt.owner,
            "q": flt.q, "stalled": flt.stalled}
    state = core.lifecycle.start(BULK_KIND, args, owner=OPERATOR_OWNER, tenant=OPERATOR_TENANT)
    return redirect(url_for("jobs.status", job_id=state.job_id), code=303)  # type: ignore[return-value]
