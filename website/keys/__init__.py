"""API keys: operators create, list and revoke named keys for programs; a key then owns
what it starts (``website/auth/owners.py``) and is counted by its own rate limit.

Who may: operators only (``OPS_TOKEN``, like the dashboard; 401 otherwise), through
``/api/keys`` (JSON) and the dashboard's keys panel (forms, CSRF token). The keys
themselves (their layout, hashing, checks) are ``shared/apikeys.py``; this package
parses HTTP only. docs/api-keys.md says how a program uses one.
"""

from __future__ import annotations

from flask import Flask, Response, make_response

from shared.apikeys import key_quota, key_tenant
from website.auth.owners import refused_key, request_key
from website.extensions import core
from website.http import ratelimit
from website.http.answers import error_response
from website.keys import api, pages


def refuse_bad_key() -> Response | None:
    """``before_request``, first of all: a bearer token with the API key prefix that is no
    valid key (unknown, or revoked) is refused with 401 at once, on every route."""
    reason = refused_key()
    if reason is None:
        return None
    body, status = error_response(401, reason)
    response = make_response(body, status)
    response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


def counted_as() -> tuple[str, int | None] | None:
    """For the rate limits: a request with a valid key counts against the key (its
    owner ``k-<id>``), at the key's own ``rate`` if it has one (else ``RATE_LIMIT``)."""
    key_id = request_key()
    if key_id is None:
        return None
    return key_tenant(key_id), key_quota(core.client, key_id).get("rate")


def init_app(app: Flask) -> None:
    """Register ``/api/keys``, the dashboard's key forms, the refusal of bad keys (before
    every other hook, so a revoked key is never counted nor served) and the per-key
    rate limit."""
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    app.before_request_funcs.setdefault(None, []).insert(0, refuse_bad_key)
    ratelimit.count_by(app, counted_as)
