"""Operations dashboard: jobs (all, or a filter's), queue depth and workers, live.

The page is rendered with one page of the jobs matching its filter
(``?state=&kind=&owner=&q=``, shareable; ``&cursor=`` for older pages, see
``shared.jobquery``), bounded by ``DASHBOARD_PAGE_SIZE``. Its script joins the
``dashboard`` Socket.IO room with the signed token the page carries; the
``watchDashboard`` ack returns a fresh snapshot of the same page (the room is
joined first, so no change is missed), and after that every job change
arrives as one compact ``jobChanged`` event; the script adds or drops the
row as the job enters or leaves the filter. A job started with an API key
(owner ``k-<id>``) shows the key's name (``ownerName``); the page lists the keys
(``website/keys``: create, revoke) and offers their owners to the filter.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from flask import Blueprint, Flask, Response, current_app, render_template, request, url_for
from rq.job import Job

from shared.apikeys import key_names, list_keys
from shared.fleet import short_worker_name
from shared.jobquery import BadFilter, JobFilter, parse_cursor
from shared.protocol import DASHBOARD_ROOM, DASHBOARD_SUBSCRIBE, STATES
from shared.rqconf import SERIALIZER
from shared.schedules import ScheduleStore
from shared.store import JobState
from website.auth.operators import dashboard_token, dashboard_token_ok, ops_allowed, ops_challenge
from website.extensions import core, socketio
from website.ops import fleet as fleet_panel
from website.ops.overview import overview
from website.realtime.limits import Refused, joined, throttle

log = logging.getLogger(__name__)
bp = Blueprint("dashboard", __name__)
def job_row(job: JobState, worker: str | None) -> dict[str, Any]:
    """A job as the dashboard and ``GET /api/jobs`` list it."""
    return {
        "jobId": job.job_id, "kind": job.kind, "state": job.state, "progress": job.progress,
        "stage": job.stage, "message": job.message, "attempt": job.attempt,
        "owner": job.owner, "ownerName": None,  # the key's name (with_owner_names)
        "createdAt": job.created_at, "startedAt": job.started_at,
        "finishedAt": job.finished_at, "worker": worker or "",
        "workerShort": short_worker_name(worker) if worker else "",
        "url": url_for("jobs.status", job_id=job.job_id),
        "page": job.extra.get("page") or None,  # the page the job works for (a snippet's)
        "pageText": job.extra.get("page_text") or "page",
    }


def with_owner_names(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with ``ownerName`` set for the jobs an API key started (its name)."""
    names = key_names(core.client, [row["owner"] for row in rows])
    for row in rows:
        row["ownerName"] = names.get(row["owner"])
    return rows


def workers_of(job_ids: list[str]) -> dict[str, str]:
    if not job_ids:
        return {}
    rq_jobs = Job.fetch_many(job_ids, connection=core.lifecycle.queue.connection,
                             serializer=SERIALIZER)
    return {job.id: job.worker_name for job in rq_jobs if job is not None and job.worker_name}


def filter_total(flt: JobFilter) -> int:
    """How many jobs the filter matches: the index size for one index (expired
    entries leave it within a minute), an exact walk for an intersection or text."""
    names = flt.index_keys()
    if len(names) == 1 and not flt.q:
        return int(core.client.zcard(names[0]))  # type: ignore[arg-type]
    return core.query.count(flt)


def snapshot(flt: JobFilter, cursor: str | None = None) -> dict[str, Any]:
    """One page of the filter's jobs (from ``cursor``), and every queue and worker."""
    size = current_app.config["DASHBOARD_PAGE_SIZE"]
    found = core.query.page(flt, cursor, size)
    workers_by_job = workers_of([job.job_id for job in found.jobs])
    fleet = fleet_panel.snapshot()  # every queue and worker: website/ops/fleet.py
    return {
        "filter": flt.to_args(), "cursor": cursor or "", "next": found.next,
        "pageSize": size, "total": filter_total(flt), "now": time.time(),
        "queueDepth": fleet["queueDepth"], "fleet": fleet,
        "jobs": with_owner_names([job_row(job, workers_by_job.get(job.job_id))
                                  for job in found.jobs]),
    }


def read_filter(args: Any) -> tuple[JobFilter, str | None]:
    """The filter and cursor of a request's (or a watch message's) arguments.

    Raises :class:`BadFilter` with the reason.
    """
    flt = JobFilter.parse(args)
    cursor = str(args.get("cursor") or "") or None
    parse_cursor(cursor)
    return flt, cursor


@bp.get("/dashboard")
def dashboard() -> Response | str | tuple[Response | str, int]:
    """The dashboard page: newest jobs first, filtered by ``?state=&kind=&owner=&q=``."""
    if not ops_allowed():
        return ops_challenge()
    flt, cursor = read_filter(request.args)
    kinds = sorted(core.kinds)
    api_keys = list_keys(core.client)
    return render_template("dashboard.html", data=snapshot(flt, cursor), token=dashboard_token(),
                           flt=flt, states=STATES, kinds=kinds,
                           schedules=ScheduleStore(core.client).all(), api_keys=api_keys,
                           pausable=[k for k in kinds if not core.kinds[k].hidden],
                           paused=core.lifecycle.pause.paused(),
                           overview=overview("1h"),  # the overview at the top (_overview.html)
                           owner_name=next((k.name for k in api_keys if k.tenant == flt.owner),
                                           None))


def on_watch(data: object) -> dict[str, Any]:
    """``watchDashboard`` with ``{"token", "filter", "cursor"}``: join the room,
    ack a snapshot. Throttled per connection; the room is left again when the
    snapshot fails.
    """
    try:
        throttle()
    except Refused as exc:
        return {"ok": False, "error": str(exc)}
    if not isinstance(data, dict) or not dashboard_token_ok(data.get("token")):
        return {"ok": False,
                "error": "a valid dashboard token is needed (they last an hour): reload the page"}
    wanted = data.get("filter") or {}
    if not isinstance(wanted, dict):
        return {"ok": False, "error": "filter must be an object"}
    try:
        flt, cursor = read_filter({**wanted, "cursor": data.get("cursor")})
    except BadFilter as exc:
        return {"ok": False, "error": str(exc)}
    try:
        with joined(DASHBOARD_ROOM):
            return {"ok": True, "snapshot": snapshot(flt, cursor)}
    except Refused as exc:
        return {"ok": False, "error": str(exc)}
    except redis.RedisError as exc:
        log.warning("dashboard snapshot: Redis unavailable: %s", exc)
        return {"ok": False, "error": "state store unavailable, retry later"}


def register(app: Flask) -> None:
    """Register the page and the Socket.IO handler."""
    app.register_blueprint(bp)
    socketio.on_event(DASHBOARD_SUBSCRIBE, on_watch)
