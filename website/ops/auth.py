"""Who may see the operator pages: ``OPS_TOKEN`` and the dashboard's socket token.

When ``OPS_TOKEN`` is set, ``/dashboard`` and ``/metrics`` want it as a bearer
token (Prometheus' ``authorization``) or as the password of HTTP Basic auth
(a browser's prompt; any user name). When it is empty they are open.

A dashboard page hands its Socket.IO connection a short-lived signed token,
so that only someone who could load the page can join the dashboard room.
"""

from __future__ import annotations

import hmac

from flask import Response, current_app, make_response, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from shared.signing import parse_bearer
from website.http.errors import error_response

_SALT = "jobcast.dashboard"
_SUBJECT = "dashboard"
DASHBOARD_TOKEN_MAX_AGE = 24 * 3600


def ops_allowed() -> bool:
    """True when ``OPS_TOKEN`` is unset or the request carries it."""
    expected = current_app.config["OPS_TOKEN"]
    if not expected:
        return True
    given = parse_bearer(request.headers.get("Authorization"))
    if given is None and request.authorization is not None:
        given = request.authorization.password
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


def ops_challenge() -> Response:
    """401 asking for the operator token (HTML or JSON like every error)."""
    body, status = error_response(401, "This page needs the operator token (OPS_TOKEN).")
    resp = make_response(body, status)
    resp.headers["WWW-Authenticate"] = 'Basic realm="Jobcast operations", charset="UTF-8"'
    return resp


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_SALT)


def dashboard_token() -> str:
    """A token that lets a Socket.IO connection join the dashboard room."""
    return _serializer().dumps(_SUBJECT)


def dashboard_token_ok(token: object) -> bool:
    """True for a dashboard token signed by this site in the last day."""
    if not isinstance(token, str) or not token:
        return False
    try:
        return _serializer().loads(token, max_age=DASHBOARD_TOKEN_MAX_AGE) == _SUBJECT
    except BadSignature:
        return False
