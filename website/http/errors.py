"""Error pages: JSON for API clients, HTML for browsers; never a bare 500."""

from __future__ import annotations

import logging

import redis
from flask import Flask, Response, jsonify, make_response, render_template, request
from werkzeug.exceptions import HTTPException

from website.http.access import loggable
from website.http.body import size_text
from website.http.storage import RETRY_AFTER_SECONDS, is_out_of_memory

log = logging.getLogger(__name__)


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
        return error_response(503, "The job store is unavailable; try again shortly.")
