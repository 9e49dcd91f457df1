"""Pause and resume a kind (``shared/pause.py``): operators only.

``POST /api/kinds/<name>/pause`` and ``…/resume`` (``OPS_TOKEN`` as a bearer token;
anyone else gets 401, as on every operator route, and nothing changes; an unknown
or hidden kind 404), and the dashboard's Pause/Resume buttons (forms, CSRF token).
While a kind is paused its running jobs finish and its other jobs wait; their pages
say "paused by an operator".
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, redirect, url_for

from shared.errors import NotFound
from shared.kinds import JobKind
from website.auth.operators import ops_allowed, ops_challenge
from website.extensions import core

bp = Blueprint("pausing", __name__)


@bp.before_request
def _operators_only() -> Response | tuple[Response | str, int] | None:
    return None if ops_allowed() else ops_challenge()


def _kind(name: str) -> JobKind:
    kind = core.kinds.get(name)
    if kind is None or kind.hidden:  # the site's own bulk kind is not paused
        raise NotFound(f"unknown kind {name[:40]!r}", {"kind": "is not a kind of this site"})
    return kind


def _change(name: str, action: str) -> dict[str, object]:
    kind = _kind(name)
    if action == "pause":
        core.lifecycle.pause_kind(kind.name)
        return {"kind": kind.name, "paused": True}
    resumed = core.lifecycle.resume_kind(kind.name)
    return {"kind": kind.name, "paused": False, "resumed": resumed}


@bp.post("/api/kinds/<name>/<any(pause, resume):action>")
def change_kind(name: str, action: str) -> Response:
    """Pause or resume a kind: 200 ``{"kind", "paused"}`` (a resume also says how many
    held jobs it queued again: ``resumed``); 404 for an unknown kind."""
    return jsonify(_change(name, action))


@bp.post("/dashboard/kinds/<name>/<any(pause, resume):action>")
def change_from_dashboard(name: str, action: str) -> Response:
    """The dashboard's Pause/Resume buttons: 303 back to the dashboard's kinds."""
    _change(name, action)
    return redirect(url_for("dashboard.dashboard") + "#kinds", code=303)  # type: ignore[return-value]
