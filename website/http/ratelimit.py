"""Rate limits on the routes that create work, with Flask-Limiter on Redis.

Each limited endpoint gets two fixed-window limits, counted in the app's Redis
(``REDIS_URL``, keys under ``jobcast-volatile:ratelimit:``) so that every web
process shares the counts:

- ``RATE_LIMIT`` (default ``30/minute``) per client: the client is its address
  (:func:`client_key`: an IPv4 address as is, an IPv6 address by its /64);
- ``RATE_LIMIT_GLOBAL`` (default ``600/minute``) for all clients together, a
  ceiling that many addresses cannot get around.

``0`` disables either. A feature may count some requests by another key and limit
(:func:`count_by`): a request with an API key is counted by its key, at the key's
own ``rate`` (``website/keys``), instead of by its address. Over a limit the answer
is 429 with ``Retry-After``, as JSON under ``/api/`` and as an HTML page otherwise.
Endpoints are limited explicitly, by name, in their feature's ``init_app``::

    ratelimit.limit(app, "jobs", "jobs.create", "api.create_job")

Endpoints that share a scope share one budget (the page form and the JSON API
creating the same thing). Behind a reverse proxy, set ``TRUSTED_PROXIES`` so
that the client address comes from ``X-Forwarded-For`` (``create_app`` then
applies werkzeug's ``ProxyFix``); without it that header is ignored.

Flask-Limiter keeps its limits and its storage per ``Limiter`` object, so each
app gets its own (:class:`RateLimits` creates it in ``init_app``): several
apps in one process (tests, benchmarks) never share a storage or a switch.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, g, make_response, request
from flask_limiter import Limiter, RateLimitExceeded

from shared import keys, redisconn
from shared.config import parse_rate
from website.http.answers import error_response

EVERYONE = "all-clients"  # the key of the global ceiling
# Who counts a request instead of its address: (counting key, requests per minute, or
# None for RATE_LIMIT), or None for "its address" (see count_by).
Who = Callable[[], tuple[str, int | None] | None]
_WHO = "jobcast.ratelimit.who"
_WHO_CACHE = "jobcast_ratelimit_who"  # flask.g: the request's answer, asked once


def client_network(address: str | None) -> str:
    """The rate-limit key of an address: IPv4 as is, IPv6 by its /64 network."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip), 64), strict=False))  # no zone id
    return str(ip)


def client_key() -> str:
    """Who is counted: the client's address (its /64 for IPv6).

    ``request.remote_addr`` is the peer, or with ``TRUSTED_PROXIES`` the address
    the trusted proxies put in ``X-Forwarded-For`` (werkzeug's ``ProxyFix``).
    """
    return client_network(request.remote_addr)


def count_by(app: Flask, who: Who) -> None:
    """Let ``who`` say, per request, who is counted instead of its address, and at what
    rate (requests per minute; None: ``RATE_LIMIT``). Read at request time, so it may
    be installed after the endpoints were limited."""
    app.extensions[_WHO] = who


def _counted_as() -> tuple[str, int | None] | None:
    if not hasattr(g, _WHO_CACHE):
        who: Who | None = current_app.extensions.get(_WHO)
        setattr(g, _WHO_CACHE, who() if who is not None else None)
    found: tuple[str, int | None] | None = getattr(g, _WHO_CACHE)
    return found


def per_client_key() -> str:
    """The per-client limit's key: what :func:`count_by` names, else :func:`client_key`."""
    found = _counted_as()
    return found[0] if found is not None else client_key()


def per_client_limit() -> str:
    """The per-client limit of this request: its own rate (:func:`count_by`), else
    ``RATE_LIMIT`` ('' when disabled: Flask-Limiter then applies none)."""
    found = _counted_as()
    if found is not None and found[1] is not None:
        return f"{found[1]} per 60 second"
    return current_app.extensions[RateLimits.name + ".per_client"]  # type: ignore[no-any-return]


def everyone_key() -> str:
    """The one key of the global ceiling: all clients count together."""
    return EVERYONE


def limit_string(rate: str, name: str) -> str:
    """A ``RATE_LIMIT``-style setting as a Flask-Limiter limit ("" when disabled)."""
    count, window = parse_rate(rate, name)
    return f"{count} per {window} second" if count else ""


class RateLimits:
    """Flask-Limiter, one ``Limiter`` per app; created unbound, bound with ``init_app``."""

    name = "jobcast.ratelimit"

    def init_app(self, app: Flask) -> None:
        """Create the app's limiter on its Redis and the 429 answer."""
        limiter = Limiter(
            key_func=client_key,
            # limits' own Sentinel storage takes neither a database nor a password of
            # the Sentinels' own: it gets the pool shared/redisconn.py builds instead.
            storage_uri="redis://",
            storage_options={"key_prefix": keys.RATE_LIMIT_PREFIX,
                             "connection_pool": redisconn.pool(  # type: ignore[dict-item]
                                 app.config["REDIS_URL"], health_check_interval=30)},
            strategy="fixed-window",
            headers_enabled=False,  # no extra Redis read on every limited request
        )
        limiter.init_app(app)
        limited: set[str] = set()
        # Flask-Limiter checks every request; one that no limit names leaves at once
        # (its supported request filter) instead of resolving "no limits" each time.
        limiter.request_filter(lambda: request.endpoint not in limited)
        app.extensions[self.name] = limiter
        app.extensions[self.name + ".per_client"] = limit_string(app.config["RATE_LIMIT"],
                                                                 "RATE_LIMIT")
        app.extensions[self.name + ".endpoints"] = limited
        app.register_error_handler(RateLimitExceeded, too_many_requests)

    def limiter(self, app: Flask) -> Limiter:
        """The app's limiter."""
        return app.extensions[self.name]  # type: ignore[no-any-return]

    def limit(self, app: Flask, scope: str, *endpoints: str) -> None:
        """See :func:`limit`."""
        unknown = [endpoint for endpoint in endpoints if endpoint not in app.view_functions]
        if unknown:
            raise ValueError(f"rate limit for unknown endpoint(s): {', '.join(unknown)}")
        limiter = self.limiter(app)
        everyone = limit_string(app.config["RATE_LIMIT_GLOBAL"], "RATE_LIMIT_GLOBAL")
        for endpoint in endpoints:
            view: Callable[..., Any] = app.view_functions[endpoint]
            if everyone:
                view = limiter.shared_limit(everyone, scope=f"{scope}:{EVERYONE}",
                                            key_func=everyone_key)(view)
            # Dynamic: an API key's own rate, else RATE_LIMIT (none when that is 0).
            view = limiter.shared_limit(per_client_limit, scope=scope,
                                        key_func=per_client_key)(view)
            app.view_functions[endpoint] = view
            app.extensions[self.name + ".endpoints"].add(endpoint)


rate_limits = RateLimits()


def limit(app: Flask, scope: str, *endpoints: str) -> None:
    """Rate-limit the given endpoints (``"blueprint.view"``) under ``scope``.

    Raises ``ValueError`` for an endpoint the app does not have, so that a
    renamed view cannot silently lose its limit.
    """
    rate_limits.limit(app, scope, *endpoints)


def too_many_requests(exc: RateLimitExceeded) -> Response:
    """429 with ``Retry-After`` (seconds until the window ends), JSON or HTML.

    Flask-Limiter logs the refusal itself (logger ``flask-limiter``, INFO)."""
    item = exc.limit.limit
    retry_after = item.get_expiry()
    current = rate_limits.limiter(current_app).current_limit
    if current is not None and current.breached:
        retry_after = max(1, min(retry_after, math.ceil(current.reset_at - time.time())))
    who = ("from all clients together" if exc.limit.key_func is everyone_key
           else "with this API key" if _counted_as() is not None else "")
    message = (f"Too many requests{' ' + who if who else ''}: at most {item.amount} "
               f"per {item.get_expiry()} s. Try again in {retry_after} s.")
    body, status = error_response(429, message)
    response = make_response(body, status)
    response.headers["Retry-After"] = str(retry_after)
    return response
