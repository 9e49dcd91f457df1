"""Bulk cancel and bulk retry of everything a dashboard filter matches.

Who may: operators only (``OPS_TOKEN``, like the dashboard; 401 otherwise).
``GET /dashboard/bulk?action=cancel|retry&<filter>`` shows how many jobs
match and asks for confirmation; the form's ``POST /dashboard/bulk`` (CSRF
token as every form) starts a job of the hidden ``bulk`` kind
(``shared/kinds/bulk.py``), run by the worker with its own progress, and
answers 303 to that job's page.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, url_for

from shared.jobquery import BadFilter, JobFilter
from shared.kinds.bulk import ACTION_STATES, ACTIONS, BULK_KIND
from shared.protocol import STATES
from website.auth.operators import ops_allowed, ops_challenge
from website.extensions import core
from website.http.errors import error_response

bp = Blueprint("bulk", __name__)
OPERATOR_OWNER = "operator"  # the owner of the bulk jobs operators start


def _read(args: Any) -> tuple[str, JobFilter]:
    action = str(args.get("action", "") or "")
    if action not in ACTIONS:
        raise BadFilter(f"action must be one of {', '.join(ACTIONS)}")
    return action, JobFilter.parse(args)


def states_in_words(action: str) -> str:
    """The states ``action`` changes, in the order of ``STATES``, as words:
    ``"scheduled, queued and running"``."""
    names = [state for state in STATES if state in ACTION_STATES[action]]
    return " and ".join(filter(None, [", ".join(names[:-1]), names[-1]]))


@bp.get("/dashboard/bulk")
def confirm() -> Response | str | tuple[Response | str, int]:
    """How many jobs the action would touch, and a button to go ahead."""
    if not ops_allowed():
        return ops_challenge()
    try:
        action, flt = _read(request.args)
    except BadFilter as exc:
        return error_response(400, str(exc))
    count = core.query.count(flt)
    return render_template("bulk.html", action=action, flt=flt, count=count,
                           changes=states_in_words(action))


@bp.post("/dashboard/bulk")
def start() -> Response | tuple[Response | str, int]:
    """Start the bulk job; 303 to its page."""
    if not ops_allowed():
        return ops_challenge()
    try:
        action, flt = _read(request.form)
    except BadFilter as exc:
        return error_response(400, str(exc))
    args = {"action": action, "state": flt.state, "kind": flt.kind, "owner": flt.owner,
            "q": flt.q}
    state = core.lifecycle.start(BULK_KIND, args, owner=OPERATOR_OWNER)
    return redirect(url_for("jobs.status", job_id=state.job_id), code=303)  # type: ignore[return-value]
