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

from shared.kinds.validate import check_args, with_defaults
from shared.protocol import DEMO_KIND
from shared.schedules import BadSchedule, Schedule, ScheduleStore, UnknownSchedule
from website.auth.operators import ops_allowed, ops_challenge
from website.extensions import core
from website.http.body import read_json_body
from website.http.errors import error_response

bp = Blueprint("recurring", __name__)
BODY_MAX = 64 * 1024


def schedule_store() -> ScheduleStore:
    """The schedules of the current app's Redis."""
    return ScheduleStore(core.client)


def _bad(message: str, field: str) -> tuple[Response, int]:
    return jsonify({"error": message, "fields": {field: message}}), 400


@bp.before_request
def _operators_only() -> Response | tuple[Response | str, int] | None:
    return None if ops_allowed() else ops_challenge()


@bp.get("/api/schedules")
def list_schedules() -> Response:
    """Every schedule, with its next run (null while paused)."""
    return jsonify({"schedules": [s.to_json() for s in schedule_store().all()]})


@bp.post("/api/schedules")
def create_schedule() -> tuple[Response, int] | tuple[Response | str, int]:
    """``{"cron", "kind", "args"}``: 201 with the schedule; 400 naming a bad field."""
    body = read_json_body(BODY_MAX)
    if not isinstance(body, dict):
        return error_response(400, 'body must be a JSON object {"cron", "kind", "args"}')
    kind = core.kinds.get(body.get("kind", DEMO_KIND)) if isinstance(
        body.get("kind", DEMO_KIND), str) else None
    if kind is None:
        return _bad(f"unknown kind; kinds: {', '.join(sorted(core.kinds))}", "kind")
    if kind.uploads:
        return _bad("a kind with uploads cannot be scheduled", "kind")
    raw: Any = body.get("args", {})
    if not isinstance(raw, dict):
        return _bad("args must be a JSON object", "args")
    args = with_defaults(kind, raw)
    errors = check_args(kind, args) or (kind.check(args) if kind.check else {})
    if errors:
        return jsonify({"error": f"Check {', '.join(sorted(errors))}.", "fields": errors}), 400
    try:
        schedule = schedule_store().create(body.get("cron"), kind.name, args)  # type: ignore[arg-type]
    except BadSchedule as exc:
        return _bad(str(exc), "cron")
    return jsonify(schedule.to_json()), 201


def _change(schedule_id: str, action: str) -> Schedule:
    store = schedule_store()
    return store.pause(schedule_id) if action == "pause" else store.resume(schedule_id)


@bp.post("/api/schedules/<schedule_id>/<any(pause, resume):action>")
def change_schedule(schedule_id: str, action: str) -> Response | tuple[Response | str, int]:
    """Pause or resume a schedule: 200 with it; 404 for an unknown id."""
    try:
        return jsonify(_change(schedule_id, action).to_json())
    except UnknownSchedule:
        return error_response(404, "unknown schedule id")


@bp.delete("/api/schedules/<schedule_id>")
def delete_schedule(schedule_id: str) -> Response | tuple[Response | str, int]:
    """Delete a schedule: 204; 404 for an unknown id."""
    try:
        schedule_store().delete(schedule_id)
    except UnknownSchedule:
        return error_response(404, "unknown schedule id")
    return Response(status=204)


@bp.post("/dashboard/schedules/<schedule_id>/<any(pause, resume):action>")
def change_from_dashboard(schedule_id: str, action: str) -> Response | tuple[Response | str, int]:
    """The dashboard's pause/resume buttons: 303 back to the dashboard."""
    try:
        _change(schedule_id, action)
    except UnknownSchedule:
        return error_response(404, "unknown schedule id")
    return redirect(url_for("dashboard.dashboard") + "#schedules", code=303)  # type: ignore[return-value]
