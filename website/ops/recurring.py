"""Recurring schedules for operators: declare, list, pause, resume, delete.

Who may: operators only (``OPS_TOKEN``, like the dashboard; 401 otherwise).
The tick process (``python -m worker.cron``) fires them; see
``shared/schedules.py``. JSON under ``/api/schedules``; the dashboard lists
them with their next run and has pause/resume buttons (forms, CSRF token).
A bad cron string, kind or arguments is a 400 naming the field.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, redirect, url_for

from shared.errors import Invalid
from shared.kinds.validate import checked_args, find_kind
from shared.protocol import DEMO_KIND
from shared.schedules import Schedule, ScheduleStore
from website.auth.operators import ops_allowed, ops_challenge
from website.extensions import core
from website.http.body import read_json_body

bp = Blueprint("recurring", __name__)
BODY_MAX = 64 * 1024


def schedule_store() -> ScheduleStore:
    """The schedules of the current app's Redis."""
    return ScheduleStore(core.client)


@bp.before_request
def _operators_only() -> Response | tuple[Response | str, int] | None:
    return None if ops_allowed() else ops_challenge()


@bp.get("/api/schedules")
def list_schedules() -> Response:
    """Every schedule, with its next run (null while paused)."""
    return jsonify({"schedules": [s.to_json() for s in schedule_store().all()]})


@bp.post("/api/schedules")
def create_schedule() -> tuple[Response, int]:
    """``{"cron", "kind", "args"}``: 201 with the schedule; 400 naming a bad field."""
    body = read_json_body(BODY_MAX)
    if not isinstance(body, dict):
        raise Invalid('body must be a JSON object {"cron", "kind", "args"}')
    kind = find_kind(core.kinds, body.get("kind", DEMO_KIND))
    if kind.uploads:
        raise Invalid("a kind with uploads cannot be scheduled", {"kind": "has uploads"})
    raw: Any = body.get("args", {})
    if not isinstance(raw, dict):
        raise Invalid("args must be a JSON object", {"args": "must be an object"})
    args = checked_args(kind, raw)
    schedule = schedule_store().create(body.get("cron"), kind.name, args)  # type: ignore[arg-type]
    return jsonify(schedule.to_json()), 201


def _change(schedule_id: str, action: str) -> Schedule:
    store = schedule_store()
    return store.pause(schedule_id) if action == "pause" else store.resume(schedule_id)


@bp.post("/api/schedules/<schedule_id>/<any(pause, resume):action>")
def change_schedule(schedule_id: str, action: str) -> Response:
    """Pause or resume a schedule: 200 with it; 404 for an unknown id."""
    return jsonify(_change(schedule_id, action).to_json())


@bp.delete("/api/schedules/<schedule_id>")
def delete_schedule(schedule_id: str) -> Response:
    """Delete a schedule: 204; 404 for an unknown id."""
    schedule_store().delete(schedule_id)
    return Response(status=204)


@bp.post("/dashboard/schedules/<schedule_id>/<any(pause, resume):action>")
def change_from_dashboard(schedule_id: str, action: str) -> Response:
    """The dashboard's pause/resume buttons: 303 back to the dashboard."""
    _change(schedule_id, action)
    return redirect(url_for("dashboard.dashboard") + "#schedules", code=303)  # type: ignore[return-value]
