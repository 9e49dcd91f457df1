"""Cross-cutting HTTP pieces: errors, security headers and CSRF, rate limits,
the Socket.IO connection cap, the access log, template filters and the OpenAPI spec."""

from __future__ import annotations

from flask import Flask

from website.extensions import socketio
from website.http import access, errors, openapi, ratelimit, security, timefmt
from website.http.capacity import ConnectionCap


def init_app(app: Flask) -> None:
    """Install the app-wide hooks; call after the extensions are bound."""
    errors.register(app)
    access.register(app)
    timefmt.register(app)
    app.register_blueprint(openapi.bp)
    security.register(app)  # CSRF on forms, cross-site API refusal, security headers
    ratelimit.register(app)
    cfg = app.config
    app.wsgi_app = ConnectionCap(  # type: ignore[method-assign]
        app.wsgi_app, cfg["SOCKETIO_MAX_CONNECTIONS"], server=socketio.server,
        per_client=cfg["SOCKETIO_MAX_PER_CLIENT"],
        connect_timeout=cfg["SOCKETIO_CONNECT_TIMEOUT"])
