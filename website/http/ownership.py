"""Who owns a job, and who may control or read it.

A job belongs to whoever created it:

* a browser: the session that posted the form remembers the ids of its
  newest jobs (Flask's signed session cookie, at most ``SESSION_JOBS``);
* an API client: the 202 answer of ``POST /api/jobs`` (and ``POST
  /api/snippets``) carries a ``controlToken`` signed for that job alone,
  sent back as ``Authorization: Bearer <controlToken>`` (a Socket.IO client
  may pass it as ``auth={"controlToken": ...}``).

Operators (``OPS_TOKEN`` as a bearer token or Basic password) may control
every job. Reading a job's state needs only its id, unless
``JOB_VISIBILITY=owner``: then only the owner and operators may, and others
get the same 404 as for an unknown id. See docs/security.md.
"""

from __future__ import annotations

from flask import current_app, request, session

from shared.config import VISIBILITY_OWNER
from shared.signing import control_token_allows, parse_bearer, sign_control_token
from website.ops.auth import is_operator

SESSION_JOBS = 40  # newest job ids a browser session remembers (cookie stays < 2 KB)
_SESSION_KEY = "jobs"


def remember_job(job_id: str) -> None:
    """Record in the browser's session that it created ``job_id``."""
    jobs = [j for j in session.get(_SESSION_KEY, []) if isinstance(j, str) and j != job_id]
    session[_SESSION_KEY] = [*jobs, job_id][-SESSION_JOBS:]


def control_token(job_id: str) -> str:
    """The ``controlToken`` for the API client that created ``job_id``."""
    return sign_control_token(current_app.config["SECRET_KEY"], job_id)


def _token_ok(token: object, job_id: str) -> bool:
    cfg = current_app.config
    return isinstance(token, str) and control_token_allows(
        cfg["SECRET_KEY"], token, job_id, max_age=cfg["JOB_TTL"])


def is_owner(job_id: str, auth_token: object = None) -> bool:
    """True when the request's session created ``job_id`` or it carries its control token
    (as a bearer token, or ``auth_token`` given by a Socket.IO client)."""
    if job_id in session.get(_SESSION_KEY, []):
        return True
    bearer = parse_bearer(request.headers.get("Authorization"))
    return _token_ok(bearer, job_id) or _token_ok(auth_token, job_id)


def may_control(job_id: str, auth_token: object = None) -> bool:
    """True for the job's owner and for operators: they may cancel and retry it."""
    return is_owner(job_id, auth_token) or is_operator()


def may_read(job_id: str, auth_token: object = None) -> bool:
    """True when the caller may read the job's state (always, unless
    ``JOB_VISIBILITY=owner``: then the owner and operators only)."""
    if current_app.config["JOB_VISIBILITY"] != VISIBILITY_OWNER:
        return True
    return may_control(job_id, auth_token)
