"""Operations dashboard: recent jobs, queue depth and workers, updated live.

The page is rendered with one page of the recent-jobs index (bounded by
``DASHBOARD_PAGE_SIZE``). Its script joins the ``dashboard`` Socket.IO room
with the signed token the page carries; the ``watchDashboard`` ack returns a
fresh snapshot of the same page (the room is joined first, so no change is
missed), and after that every job change arrives as one compact
``jobChanged`` event, emitted by the callback and the control views.
"""

from __future__ import annotations

import logging
import math
import re
import time
from typing import Any

import redis
from flask import Blueprint, Flask, Response, current_app, render_template, request, url_for
from rq import Worker
from rq.job import Job
from werkzeug.exceptions import HTTPException

from shared.protocol import DASHBOARD_ROOM, DASHBOARD_SUBSCRIBE
from shared.store import JobState
from website.extensions import redis_ext, socketio
from website.http.errors import error_response
from website.ops.auth import dashboard_token, dashboard_token_ok, ops_allowed, ops_challenge
from website.realtime.limits import Refused, joined, throttle

log = logging.getLogger(__name__)
bp = Blueprint("dashboard", __name__)
MAX_PAGE = 10_000
MAX_WORKERS_LISTED = 50
WORKER_NAME_SHOWN = 24
_RQ_DEFAULT_NAME = re.compile(r"[0-9a-f]{32}")


def short_worker_name(name: str) -> str:
    """A worker's name as the dashboard shows it (the full one goes in a ``title``).

    RQ names an unnamed worker with 32 hex digits: the first 8 are enough to tell
    workers apart. A chosen name (``host.pid``, ``worker-2``) is kept, cut at 24.
    """
    if _RQ_DEFAULT_NAME.fullmatch(name):
        return name[:8]
    if len(name) <= WORKER_NAME_SHOWN:
        return name
    return name[: WORKER_NAME_SHOWN - 1] + "…"


def snippet_url(snippet_id: str) -> str | None:
    """The page of a snippet, if this site has a ``/snippets/<id>`` page."""
    path = f"/snippets/{snippet_id}"
    try:
        current_app.url_map.bind("").match(path, method="GET")
    except HTTPException:  # not found, method not allowed, or a redirect: no link
        return None
    return path


def _row(job: JobState, worker: str | None) -> dict[str, Any]:
    snippet_id = job.extra.get("snippet_id", "")
    return {
        "jobId": job.job_id, "kind": job.kind, "state": job.state, "progress": job.progress,
        "stage": job.stage, "message": job.message, "attempt": job.attempt,
        "createdAt": job.created_at, "startedAt": job.started_at,
        "finishedAt": job.finished_at, "worker": worker or "",
        "workerShort": short_worker_name(worker) if worker else "",
        "url": url_for("jobs.status", job_id=job.job_id),
        "snippetUrl": snippet_url(snippet_id) if snippet_id else None,
    }


def _text(value: object) -> str:
    return str(getattr(value, "value", value))


def _workers_of(job_ids: list[str]) -> dict[str, str]:
    if not job_ids:
        return {}
    rq_jobs = Job.fetch_many(job_ids, connection=redis_ext.queue.connection)
    return {job.id: job.worker_name for job in rq_jobs if job is not None and job.worker_name}


def snapshot(page: int) -> dict[str, Any]:
    """One page of recent jobs, the queue depth and the workers, as plain data."""
    size = current_app.config["DASHBOARD_PAGE_SIZE"]
    store = redis_ext.store
    total = store.recent_count()
    jobs = store.recent((page - 1) * size, size)
    workers_of = _workers_of([job.job_id for job in jobs])
    queue = redis_ext.queue
    workers = Worker.all(queue=queue)[:MAX_WORKERS_LISTED]
    return {
        "page": page, "pageSize": size, "pages": max(1, math.ceil(total / size)),
        "total": total, "now": time.time(), "queueDepth": queue.count,
        "workers": [{"name": w.name, "short": short_worker_name(w.name),
                     "state": _text(w.get_state()), "job": w.get_current_job_id() or ""}
                    for w in workers],
        "jobs": [_row(job, workers_of.get(job.job_id)) for job in jobs],
    }


def _page_arg(value: object) -> int | None:
    if value is None or value == "":
        return 1
    try:
        page = int(str(value))
    except ValueError:
        return None
    return page if 1 <= page <= MAX_PAGE else None


@bp.get("/dashboard")
def dashboard() -> Response | str | tuple[Response | str, int]:
    """The dashboard page (``?page=N``, newest jobs first)."""
    if not ops_allowed():
        return ops_challenge()
    page = _page_arg(request.args.get("page"))
    if page is None:
        return error_response(400, f"page must be a whole number from 1 to {MAX_PAGE}")
    return render_template("dashboard.html", data=snapshot(page), token=dashboard_token())


def on_watch(data: object) -> dict[str, Any]:
    """``watchDashboard`` with ``{"token", "page"}``: join the room, ack a snapshot.

    Throttled per connection; the room is left again when the snapshot fails.
    """
    try:
        throttle()
    except Refused as exc:
        return {"ok": False, "error": str(exc)}
    if not isinstance(data, dict) or not dashboard_token_ok(data.get("token")):
        return {"ok": False,
                "error": "a valid dashboard token is needed (they last an hour): reload the page"}
    page = _page_arg(data.get("page"))
    if page is None:
        return {"ok": False, "error": f"page must be a whole number from 1 to {MAX_PAGE}"}
    try:
        with joined(DASHBOARD_ROOM):
            return {"ok": True, "snapshot": snapshot(page)}
    except Refused as exc:
        return {"ok": False, "error": str(exc)}
    except redis.RedisError as exc:
        log.warning("dashboard snapshot: Redis unavailable: %s", exc)
        return {"ok": False, "error": "state store unavailable, retry later"}


def register(app: Flask) -> None:
    """Register the page and the Socket.IO handler."""
    app.register_blueprint(bp)
    socketio.on_event(DASHBOARD_SUBSCRIBE, on_watch)
