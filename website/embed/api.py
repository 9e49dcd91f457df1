"""``POST /api/jobs/<id>/watch-token`` and ``GET /api/protocol``.

Who may ask for a watch token: whoever may control the job (its owner: the session
that created it, its ``controlToken``, the API key that started it; or an operator).
Anyone else: 403, or 404 with ``JOB_VISIBILITY=owner`` (as for an unknown id); a
watch token itself asks for none (it reads, it controls nothing).
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, jsonify

from shared.config import VISIBILITY_OWNER
from shared.errors import Forbidden, NotFound
from shared.protocol import is_uuid, iso_time
from website.auth.owners import may_control, watch_token
from website.extensions import core
from website.realtime import page_contract

bp = Blueprint("embed", __name__, url_prefix="/api")
PROTOCOL_MAX_AGE = 300  # seconds browsers may keep GET /api/protocol


@bp.post("/jobs/<job_id>/watch-token")
def create_watch_token(job_id: str) -> tuple[Response, int, dict[str, str]]:
    """A read-only token for one job: ``{"token", "expiresAt"}`` (ISO 8601 UTC), 201."""
    job_id = job_id.lower()
    known = is_uuid(job_id) and core.store.get(job_id) is not None
    if not known or not may_control(job_id):
        if not known or current_app.config["JOB_VISIBILITY"] == VISIBILITY_OWNER:
            raise NotFound("unknown job id")
        raise Forbidden("only the job's owner (the session, controlToken or API key that "
                        "created it) or an operator may ask for a watch token")
    signed_at = int(time.time())  # itsdangerous signs whole seconds
    token = watch_token(job_id)
    expires = iso_time(signed_at + current_app.config["WATCH_TOKEN_SECONDS"], "seconds")
    return jsonify(token=token, expiresAt=expires), 201, {"Cache-Control": "no-store"}


@bp.get("/protocol")
def protocol() -> Response:
    """The wire names (events, states) for scripts of other pages: the progress
    element reads them from here, as the site's own pages read them rendered in."""
    response = jsonify(page_contract())
    response.cache_control.public = True
    response.cache_control.max_age = PROTOCOL_MAX_AGE
    return response
