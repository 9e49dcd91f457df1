"""Errors as answers: JSON for API clients, HTML for browsers; never a bare 500.

What the core refuses (``shared.errors``) maps to its HTTP status here, in one
place (:data:`STATUS`), so a view only raises; so do werkzeug's HTTP errors and
Redis failures (503).
"""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response, jsonify, make_response, render_template, request
from werkzeug.exceptions import HTTPException

from shared.capacity import RETRY_AFTER_SECONDS, is_out_of_memory
from shared.errors import (
    Conflict,
    Forbidden,
    Invalid,
    JobcastError,
    NotFound,
    TooLarge,
    TooMany,
    Unavailable,
)
from website.http.access import loggable
from website.http.body import size_text

log = logging.getLogger(__name__)
UNAVAILABLE_RETRY_AFTER = 2  # seconds: what a Sentinel failover usually takes


# The HTTP status of each kind of error of the core, most specific first.
STATUS: tuple[tuple[type[JobcastError], int], ...] = (
    (TooLarge, 413), (Invalid, 400), (NotFound, 404), (Conflict, 409), (Forbidden, 403),
    (TooMany, 429), (Unavailable, 503))


def status_of(exc: JobcastError) -> int:
    """The HTTP status that answers ``exc``."""
    return next((status for kind, status in STATUS if isinstance(exc, kind)), 400)


def wants_json() -> bool:
    """True for API paths and clients that prefer JSON over HTML."""
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_response(status: int, message: str) -> tuple[Response | str, int]:
    """A JSON ``{"error": message}`` or an HTML error page, with ``status``."""
    if wants_json():
        return jsonify(error=message), status
    return render_template("error.html", status=status, message=message), status


def register(app: Flask) -> None:
    """Install the error handlers on ``app``."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413 and request.max_content_length:
            message = f"The request is too large: at most {size_text(request.max_content_length)}."
        body, status = error_response(status, message)
        response = make_response(body)
        for key, value in exc.get_headers():  # Allow, Retry-After, WWW-Authenticate...
            if key.lower() not in ("content-type", "content-length"):
                response.headers[key] = value
        return response, status

    @app.errorhandler(JobcastError)
    def refused(exc: JobcastError) -> tuple[Response, int]:
        status = status_of(exc)
        if wants_json():
            body: dict[str, object] = {"error": exc.message}
            if exc.fields:
                body["fields"] = exc.fields
            quota = getattr(exc, "resource", None)  # shared.quotas.QuotaReached
            if isinstance(quota, str):
                body["quota"] = quota
            response = make_response(jsonify(body))
        else:
            response = make_response(render_template("error.html", status=status,
                                                     message=exc.message))
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response, status

    @app.errorhandler(redis.RedisError)
    def storage_error(exc: redis.RedisError) -> tuple[Response | str, int]:
        if is_out_of_memory(exc):
            log.warning("Redis is full (maxmemory) for %s %s: %s", loggable(request.method, 16),
                        loggable(request.path, 200), exc)
            body, status = error_response(
                503, "The store is full; try again later, when older jobs and "
                     "snippets have expired.")
            response = make_response(body)
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            return response, status
        log.warning("Redis unavailable for %s %s: %s", loggable(request.method, 16),
                    loggable(request.path, 200), exc)
        # a restart or a Sentinel failover (a write to a demoted master is refused
        # read-only): a few seconds (docs/deploying.md, "Redis with Sentinel")
        body, status = error_response(503, "The job store is unavailable; try again shortly.")
        response = make_response(body)
        response.headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
        return response, status
