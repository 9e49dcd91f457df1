"""Per-client rate limits on creation routes, counted in Redis.

A fixed window per client: one atomic ``INCR`` (plus ``EXPIRE`` on the first
hit) of ``jobcast:ratelimit:<scope>:<client>:<window>``, so every web process
shares the count. ``RATE_LIMIT`` (for example ``30/minute``; ``0`` disables)
sets the budget of each scope. Over it the answer is 429 with ``Retry-After``,
as JSON under ``/api/`` and as an HTML page otherwise.

Apply it by endpoint, once, in ``create_app``::

    ratelimit.limit(app, "jobs", "jobs.create", "api.create_job")
    ratelimit.limit(app, "snippets", "snippets.create", "api.create_snippet")

or on a view with ``@rate_limited("jobs")``. Endpoints that share a scope share
one budget (the page form and the JSON API creating the same thing).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, current_app, request
from werkzeug.exceptions import TooManyRequests

from shared import keys
from shared.config import parse_rate
from website.extensions import redis_ext

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

_EXT = "jobcast.ratelimit"
_HIT_LUA = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


def client_id() -> str:
    """Who is counted: the client address (behind a proxy, configure ProxyFix)."""
    return request.remote_addr or "unknown"


def hit(scope: str) -> None:
    """Count one request of the current client in ``scope``; raise 429 over the limit."""
    limit, window = parse_rate(current_app.config["RATE_LIMIT"])
    if not limit:
        return
    now = time.time()
    index = int(now // window)
    key = keys.rate_limit_key(scope, client_id(), index)
    count = int(redis_ext.client.eval(_HIT_LUA, 1, key, window + 1))  # type: ignore[arg-type]
    if count > limit:
        retry_after = max(1, int((index + 1) * window - now + 0.999))
        log.info("rate limit: %s over %s/%ss in %s", client_id(), limit, window, scope)
        raise TooManyRequests(
            f"Too many requests: at most {limit} per {window} s. "
            f"Try again in {retry_after} s.",
            retry_after=retry_after,
        )


def limit(app: Flask, scope: str, *endpoints: str) -> None:
    """Rate-limit the given endpoints (``"blueprint.view"``) under ``scope``.

    Raises ``ValueError`` for an endpoint the app does not have, so that a
    renamed view cannot silently lose its limit.
    """
    scopes: dict[str, str] = app.extensions.setdefault(_EXT, {})
    unknown = [endpoint for endpoint in endpoints if endpoint not in app.view_functions]
    if unknown:
        raise ValueError(f"rate limit for unknown endpoint(s): {', '.join(unknown)}")
    for endpoint in endpoints:
        scopes[endpoint] = scope


def _before_request() -> None:
    scopes: dict[str, str] = current_app.extensions.get(_EXT, {})
    scope = scopes.get(request.endpoint or "")
    if scope is not None and request.method not in ("GET", "HEAD", "OPTIONS"):
        hit(scope)


def rate_limited(scope: str) -> Callable[[F], F]:
    """Decorator form of :func:`limit` for a single view."""
    def wrap(view: F) -> F:
        @functools.wraps(view)
        def limited(*args: Any, **kwargs: Any) -> Any:
            hit(scope)
            return view(*args, **kwargs)
        return cast(F, limited)
    return wrap


def register(app: Flask) -> None:
    """Install the endpoint-keyed check (endpoints are added with :func:`limit`)."""
    app.extensions.setdefault(_EXT, {})
    app.before_request(_before_request)
