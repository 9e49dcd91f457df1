"""Job pages: start a job of any kind from its form, watch it, download its files."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for

from shared import keys
from shared.errors import Invalid, NotFound, TooLarge
from shared.joblog import read_log
from shared.kinds import JobKind
from shared.protocol import DEMO_KIND, LOG_START
from shared.unique import DEDUPLICATED
from website.auth.owners import (
    may_control,
    readable_job,
    remember_job,
    request_address,
    request_owner,
    request_tenant,
)
from website.extensions import core
from website.http.answers import error_response
from website.jobs.api import positions
from website.jobs.flow import DEDUPLICATED_REFUSED, may_learn
from website.jobs.rerun import rerun_links
from website.jobs.submit import read_submission

bp = Blueprint("jobs", __name__)
GONE = "There is no job with this id (it may have expired)."


def form_order(found: dict[str, JobKind]) -> list[JobKind]:
    """The kinds in the home page's order: the demo first (its "Start a new job" is
    what the README has a newcomer click), then the others as listed (by name)."""
    return sorted(found.values(), key=lambda kind: kind.name != DEMO_KIND)


@bp.get("/")
def index() -> str:
    """Home page: a form for each job kind."""
    return render_template("index.html", kinds=form_order(core.kinds), rejected=None, values={})


@bp.post("/jobs")
def create() -> Response | tuple[Response | str, int]:
    """Start a job from a kind's form; the form again with its errors when refused."""
    try:
        submitted = read_submission(core.kinds)
    except TooLarge as exc:
        return error_response(413, exc.message)
    except Invalid as exc:
        if "kind" in exc.fields:  # no such form: nothing to show again
            return error_response(400, exc.message)
        values = {k: v for k, v in request.form.items() if k not in ("csrf_token", "kind")}
        return render_template("index.html", kinds=form_order(core.kinds), rejected=exc,
                               rejected_kind=request.form.get("kind") or DEMO_KIND,
                               values=values), 400
    tenant = request_tenant()  # before request_owner: it may make the session's owner id
    state = core.lifecycle.start(submitted.kind, submitted.args, owner=request_owner(),
                                 tenant=tenant, address=request_address())
    if state.extra.get(DEDUPLICATED):  # the kind's unique arguments found a job: show it
        if not may_learn(state.job_id):
            return error_response(409, f"Not started: {DEDUPLICATED_REFUSED}.")
        return redirect(url_for("jobs.status", job_id=state.job_id), code=303)  # type: ignore[return-value]
    remember_job(state.job_id)
    return redirect(url_for("jobs.status", job_id=state.job_id), code=303)  # type: ignore[return-value]


@bp.get("/jobs/<job_id>")
def status(job_id: str) -> str:
    """Status page of one job, rendered with its current state; Cancel and
    Retry only for those who may use them (its owner, operators)."""
    state = readable_job(job_id, GONE)
    log_lines = read_log(core.client, state.job_id, LOG_START,
                         current_app.config["JOB_LOG_MAX"]).lines
    place = positions().of([state]).get(state.job_id)  # queued: its place in line
    return render_template("job.html", job=state, kind=core.kinds.get(state.kind),
                           place=place.words() if place is not None else "",
                           no_worker=place.no_worker if place is not None else "",
                           can_control=may_control(state.job_id), log_lines=log_lines,
                           rerun=rerun_links(state),
                           log_last=log_lines[-1].id if log_lines else LOG_START)


@bp.get("/jobs/<job_id>/files/<name>")
def download(job_id: str, name: str) -> Response:
    """A file the job saved (``ctx.save_file``), as an attachment."""
    job_id = readable_job(job_id, GONE).job_id
    data: list[bytes | None] = core.lifecycle.queue.connection.hmget(  # type: ignore[assignment]
        keys.job_file_key(job_id, name), ["data", "type"])
    if data[0] is None:
        raise NotFound("This job has no such file (it may have expired).")
    content_type = (data[1] or b"application/octet-stream").decode("ascii", "replace")
    safe = "".join(ch for ch in name if ch.isalnum() or ch in "._-") or "download"
    return Response(data[0], content_type=content_type, headers={
        "Content-Disposition": f'attachment; filename="{safe}"',
        "X-Content-Type-Options": "nosniff"})
