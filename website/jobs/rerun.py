"""Run a job again with changes: the kind's form filled with a job's arguments.

``GET /jobs/<id>/rerun`` shows the form of the job's kind (the home page's,
``_kind_form.html``) filled with its arguments; an upload cannot be filled in, and
the page says so. ``POST /jobs/<id>/rerun`` starts the new job from it, through
``Lifecycle.start`` (``shared/rerun.py`` stores the link both ways), and answers
303 to the new job's page, which says "run again from" the old one.

Who may: whoever may read the job's arguments, that is its owner (session,
``controlToken`` or API key) and operators (``OPS_TOKEN``), as for cancel and
retry; anyone else gets 403 (404 with ``JOB_VISIBILITY=owner``, as for an unknown
id) and nothing is started. The new job is the caller's own (owner and tenant as
for any start from a form), counted against their quotas and rate-limited alike.

The operators' job page links to the same form under ``/dashboard/jobs/<id>/rerun``
(GET and POST; operators only, 401 otherwise, as every operator page), so that a
browser sends the operator's Basic credentials with it; its links go to the
operators' pages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, url_for

from shared.errors import Invalid, NotFound, TooLarge
from shared.jobstate import JobState
from shared.kinds import JobKind
from shared.protocol import is_uuid
from shared.rerun import RERUN_OF, form_values, reruns, start_again, stored_args
from shared.unique import DEDUPLICATED
from website.auth.operators import ops_allowed, ops_challenge
from website.auth.owners import may_control, remember_job, request_address, request_owner, request_tenant
from website.extensions import core
from website.http.answers import error_response
from website.jobs.control import authorise
from website.jobs.flow import DEDUPLICATED_REFUSED, may_learn
from website.jobs.submit import read_submission

bp = Blueprint("rerun", __name__)
GONE = "There is no job with this id (it may have expired)."
NOT_STARTABLE = "Jobs of this kind cannot be started from a form on this site."


def rerunnable(job_id: str, operator: bool = False) -> tuple[JobState, JobKind]:
    """The job and its kind, when the caller may run it again (``operator``: an
    operator page let the caller in already); ``Forbidden`` (or ``NotFound`` with
    private jobs) for others, ``NotFound`` for an unknown id or a kind this site does
    not start from forms (the bulk kind)."""
    job_id = job_id.lower()
    if not operator:
        authorise("rerun", job_id)
    state = core.store.get(job_id) if is_uuid(job_id) else None
    if state is None:
        raise NotFound(GONE)
    kind = core.kinds.get(state.kind)
    if kind is None:
        raise NotFound(NOT_STARTABLE)
    return state, kind


def _pages(operator: bool) -> dict[str, str]:
    """The endpoints of a job's page, and of its form to run it again."""
    if operator:
        return {"page": "jobdetail.detail", "form": "rerun.ops_form", "start": "rerun.ops_start"}
    return {"page": "jobs.status", "form": "rerun.form", "start": "rerun.start"}


def rerun_links(state: JobState, operator: bool = False) -> dict[str, Any]:
    """What a job's page (``operator``: the operators' one) says of reruns: ``of``,
    the job it was run again from; ``reruns``, the jobs run again from it; ``may``,
    whether the caller may run it again (and ``page``, ``form``: where links go). The
    public page names only the jobs the caller may control (a rerun's id would let
    whoever reads one job read another); the operators' page names them all."""
    old = state.extra.get(RERUN_OF, "")
    if old and not (operator or may_control(old)):
        old = ""
    again = [job_id for job_id in reruns(core.client, state.job_id)
             if operator or may_control(job_id)]
    may = state.kind in core.kinds and (operator or may_control(state.job_id))
    return {"of": old, "reruns": again, "may": may, **_pages(operator)}


def _form(state: JobState, kind: JobKind, values: Mapping[str, object], operator: bool,
          rejected: Invalid | None = None) -> str:
    uploads = [kind.args["properties"][name].get("title", name) for name in kind.uploads]
    return render_template("rerun.html", job=state, kind=kind, values=values, uploads=uploads,
                           rejected=rejected, pages=_pages(operator))


def _show(job_id: str, operator: bool) -> str:
    state, kind = rerunnable(job_id, operator)
    return _form(state, kind, form_values(kind, stored_args(state)), operator)


def _start(job_id: str, operator: bool) -> Response | tuple[Response | str, int]:
    old, kind = rerunnable(job_id, operator)
    try:
        submitted = read_submission({kind.name: kind})  # the job's kind, no other
    except TooLarge as exc:
        return error_response(413, exc.message)
    except Invalid as exc:
        if "kind" in exc.fields:
            return error_response(400, f"This form runs {kind.title} jobs only.")
        values = {k: v for k, v in request.form.items() if k not in ("csrf_token", "kind")}
        return _form(old, kind, values, operator, exc), 400
    tenant = request_tenant()  # before request_owner: it may make the session's owner id
    state = start_again(core.lifecycle, old, kind, submitted.args, owner=request_owner(),
                        tenant=tenant, address=request_address())
    if state.extra.get(DEDUPLICATED):  # the kind's unique arguments found a job: show it
        if not may_learn(state.job_id):
            return error_response(409, f"Not started: {DEDUPLICATED_REFUSED}.")
    else:
        remember_job(state.job_id)
    page = _pages(operator)["page"]
    return redirect(url_for(page, job_id=state.job_id), code=303)  # type: ignore[return-value]


@bp.get("/jobs/<job_id>/rerun")
def form(job_id: str) -> str:
    """The job's kind's form, filled with its arguments (its owner, operators)."""
    return _show(job_id, operator=False)


@bp.post("/jobs/<job_id>/rerun")
def start(job_id: str) -> Response | tuple[Response | str, int]:
    """Start the new job from the filled form (303 to its page); the form again with
    its errors when refused (400)."""
    return _start(job_id, operator=False)


@bp.get("/dashboard/jobs/<job_id>/rerun")
def ops_form(job_id: str) -> Response | str:
    """The operators' way to :func:`form` (401 to others, as the operators' pages)."""
    return _show(job_id, operator=True) if ops_allowed() else ops_challenge()


@bp.post("/dashboard/jobs/<job_id>/rerun")
def ops_start(job_id: str) -> Response | tuple[Response | str, int]:
    """The operators' way to :func:`start`: 303 to the new job's operators' page."""
    return _start(job_id, operator=True) if ops_allowed() else ops_challenge()
