"""Cross-cutting HTTP pieces: errors, security headers and CSRF, rate limits,
the Socket.IO connection cap, the access log, template filters and the OpenAPI spec."""

from __future__ import annotations

from flask import Flask

from website.extensions import socketio
from website.http import access, errors, openapi, ratelimit, security, timefmt
from website.http.bodytimeout import BodyReadTimeout
from website.http.capacity import ConnectionCap


def init_app(app: Flask) -> None:
    """Install the app-wide hooks; call after the extensions are bound."""
    errors.register(app)
    access.register(app)
    timefmt.register(app)
    app.register_blueprint(openapi.bp)
    security.register(app)  # CSRF on forms, cross-site API refusal, security headers
    ratelimit.register(app)
    engineio_server = socketio.server.eio
    app.wsgi_app = ConnectionCap(  # type: ignore[method-assign]
        app.wsgi_app, app.config["SOCKETIO_MAX_CONNECTIONS"],
        sessions=lambda: len(engineio_server.sockets))
    app.wsgi_app = security.TrustedHostGuard(  # type: ignore[method-assign]
        app.wsgi_app, app.config["TRUSTED_HOSTS"])
    app.wsgi_app = BodyReadTimeout(  # type: ignore[method-assign]
        app.wsgi_app, app.config["REQUEST_BODY_TIMEOUT"])
