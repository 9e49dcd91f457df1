"""Pages for the demo job: start one, watch its progress."""

from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, url_for

from shared.protocol import is_uuid
from website.extensions import redis_ext
from website.http.errors import error_response
from website.jobs.owner import may_control, may_read, remember_job
from website.jobs.services import start_demo_job

bp = Blueprint("jobs", __name__)


@bp.get("/")
def index() -> str:
    """Home page with the "Start a new job" button."""
    return render_template("index.html")


@bp.post("/jobs")
def create() -> Response:
    """Start a demo job (owned by this browser session) and send the browser to its page."""
    state = start_demo_job()
    remember_job(state.job_id)
    return redirect(url_for("jobs.status", job_id=state.job_id), code=303)  # type: ignore[return-value]


@bp.get("/jobs/<job_id>")
def status(job_id: str) -> str | tuple[Response | str, int]:
    """Status page of one job, rendered with its current state; Cancel and
    Retry only for those who may use them (its owner, operators)."""
    readable = is_uuid(job_id) and may_read(job_id.lower())
    state = redis_ext.store.get(job_id.lower()) if readable else None
    if state is None:
        return error_response(404, "There is no job with this id (it may have expired).")
    return render_template("job.html", job=state, can_control=may_control(state.job_id))
