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
    security.register(app)  # CSRF on forms, cross-site API refusal
    ratelimit.register(app)
    engineio_server = socketio.server.eio
    app.wsgi_app = ConnectionCap(  # type: ignore[method-assign]
        app.wsgi_app, app.config["SOCKETIO_MAX_CONNECTIONS"],
        sessions=lambda: len(engineio_server.sockets))
    # Outermost, so that Socket.IO answers and the cap's 503 get the headers too.
    app.wsgi_app = security.SecurityHeaders(app.wsgi_app)  # type: ignore[method-assign]
