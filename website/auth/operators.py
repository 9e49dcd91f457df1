"""Who may see the operator pages: ``OPS_TOKEN`` and the dashboard's socket token.

When ``OPS_TOKEN`` is set, ``/dashboard`` and ``/metrics`` want it as a bearer
token (Prometheus' ``authorization``) or as the password of HTTP Basic auth
(a browser's prompt; any user name). When it is empty they are closed in
production (401 saying to set ``OPS_TOKEN``) and open, with a warning at
start, in development.

A dashboard page hands its Socket.IO connection a signed token, so that only
someone who could load the page can join the dashboard room. Its key is
derived from ``OPS_TOKEN`` (changing the token revokes every dashboard token)
and it lives at most an hour.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Response, current_app, make_response, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from shared.config import DEVELOPMENT
from shared.signing import parse_bearer
from website.http.answers import error_response

_SALT = "jobcast.dashboard"
_SUBJECT = "dashboard"
DASHBOARD_TOKEN_MAX_AGE = 3600
UNCONFIGURED_MESSAGE = ("The operator pages are closed: set OPS_TOKEN in the site's "
                        "environment to open them (docs/security.md).")


def is_operator() -> bool:
    """True when ``OPS_TOKEN`` is set and the request carries it (Bearer or Basic)."""
    expected = current_app.config["OPS_TOKEN"]
    if not expected:
        return False
    given = parse_bearer(request.headers.get("Authorization"))
    if given is None and request.authorization is not None:
        given = request.authorization.password
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


def ops_open_without_token() -> bool:
    """True when the operator pages are open to all: development without ``OPS_TOKEN``."""
    cfg = current_app.config
    return not cfg["OPS_TOKEN"] and cfg["JOBCAST_ENV"] == DEVELOPMENT


def ops_allowed() -> bool:
    """True for an operator, or for anyone in development without ``OPS_TOKEN``."""
    return ops_open_without_token() or is_operator()


def ops_challenge() -> Response:
    """401 asking for the operator token (HTML or JSON like every error)."""
    message = ("This page needs the operator token (OPS_TOKEN)."
               if current_app.config["OPS_TOKEN"] else UNCONFIGURED_MESSAGE)
    body, status = error_response(401, message)
    resp = make_response(body, status)
    resp.headers["WWW-Authenticate"] = 'Basic realm="Jobcast operations", charset="UTF-8"'
    return resp


def dashboard_serializer() -> URLSafeTimedSerializer:
    """The signer of dashboard tokens: keyed by SECRET_KEY and OPS_TOKEN together."""
    cfg = current_app.config
    key = hmac.new(cfg["SECRET_KEY"].encode(), b"dashboard\0" + cfg["OPS_TOKEN"].encode(),
                   hashlib.sha256).hexdigest()
    return URLSafeTimedSerializer(key, salt=_SALT)


def dashboard_token() -> str:
    """A token that lets a Socket.IO connection join the dashboard room."""
    return dashboard_serializer().dumps(_SUBJECT)


def dashboard_token_ok(token: object) -> bool:
    """True for a dashboard token signed by this site, under the current
    ``OPS_TOKEN``, in the last hour."""
    if not isinstance(token, str) or not token:
        return False
    try:
        return dashboard_serializer().loads(token, max_age=DASHBOARD_TOKEN_MAX_AGE) == _SUBJECT
    except BadSignature:
        return False
