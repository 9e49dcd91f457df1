"""The operators' page of one job: ``/dashboard/jobs/<id>``, its whole story.

Who may: operators (``OPS_TOKEN``, like the dashboard; 401 otherwise). It
shows what the public job page does not: the kind and arguments as stored,
the owner, each attempt (worker, start, end, outcome, from
``worker/attempts.py``), every state the job entered (its timeline, kept by
the store's Lua scripts), the log, the result and, for a failure, the
traceback, which is kept under a key of its own and shown only here.

Operators act here too (#28): Cancel and Retry (``POST /dashboard/jobs/<id>/cancel``
and ``/retry``: operators only, 401 otherwise, as the page; CSRF token; the same
``Lifecycle.cancel``/``retry`` as the public page's buttons, ``website/jobs/control.py``;
303 back here), and "Run again with changes", the kind's form filled with the job's
arguments (``website/jobs/rerun.py``). They are under ``/dashboard/`` so that a
browser sends the operator's Basic credentials with them (its protection space is
the path it was asked them for). A worker's name is shown short, whole in its ``title``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Blueprint, Response, redirect, render_template, url_for

from shared import keys
from shared.apikeys import key_names
from shared.fleet import short_worker_name
from shared.joblog import read_log
from shared.protocol import LOG_START, is_uuid
from website.auth.operators import ops_allowed, ops_challenge
from website.extensions import core
from website.http.answers import error_response
from website.jobs.control import act
from website.jobs.rerun import rerun_links

log = logging.getLogger(__name__)
bp = Blueprint("jobdetail", __name__)
bp.add_app_template_filter(short_worker_name, "short_worker")
LOG_SHOWN = 1000


def _json_list(raw: list[str]) -> list[dict[str, Any]]:
    entries = []
    for item in raw:
        try:
            value = json.loads(item)
        except ValueError:
            continue
        if isinstance(value, dict):
            entries.append(value)
    return entries


def timeline(job_id: str) -> list[tuple[str, float]]:
    """``(state, time)`` for each state the job entered, oldest first."""
    entries: list[tuple[str, float]] = []
    raw: list[str] = core.client.lrange(keys.job_timeline_key(job_id), 0, -1)  # type: ignore[assignment]
    for item in raw:
        state, _, stamp = item.partition(" ")
        try:
            entries.append((state, float(stamp)))
        except ValueError:
            continue
    return entries


def story(job_id: str) -> dict[str, Any] | None:
    """Everything stored about a job, or None for an unknown one."""
    job = core.store.get(job_id)
    if job is None:
        return None
    client = core.client
    try:
        args = json.loads(job.extra.get("args", "null"))
    except ValueError:
        args = job.extra.get("args")
    attempts: list[str] = client.lrange(keys.job_attempts_key(job_id), 0, -1)  # type: ignore[assignment]
    return {
        "job": job, "args": args, "attempts": _json_list(attempts),
        "timeline": timeline(job_id),
        "log": read_log(client, job_id, LOG_START, LOG_SHOWN).lines,
        "traceback": client.get(keys.job_traceback_key(job_id)) or "",
    }


@bp.get("/dashboard/jobs/<job_id>")
def detail(job_id: str) -> Response | str | tuple[Response | str, int]:
    """The job's whole story (operators only); 404 for an unknown id."""
    if not ops_allowed():
        return ops_challenge()
    found = story(job_id.lower()) if is_uuid(job_id) else None
    if found is None:
        return error_response(404, "unknown job id")
    owner_name = key_names(core.client, [found["job"].owner]).get(found["job"].owner)
    return render_template("job_detail.html", owner_name=owner_name,
                           rerun=rerun_links(found["job"], operator=True), **found)


def _act(action: str, job_id: str) -> Response:
    if not ops_allowed():
        return ops_challenge()
    if not is_uuid(job_id):
        return error_response(404, "unknown job id")  # type: ignore[return-value]
    state = act(action, job_id.lower(), operator=True)
    return redirect(url_for("jobdetail.detail", job_id=state.job_id), code=303)  # type: ignore[return-value]


@bp.post("/dashboard/jobs/<job_id>/cancel")
def cancel(job_id: str) -> Response:
    """Cancel button of the operators' page: 303 back to it (404 unknown, 409 ended)."""
    return _act("cancel", job_id)


@bp.post("/dashboard/jobs/<job_id>/retry")
def retry(job_id: str) -> Response:
    """Retry button of the operators' page: 303 back to it (409 not failed or cancelled)."""
    return _act("retry", job_id)
