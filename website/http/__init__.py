"""Cross-cutting HTTP pieces: errors, security headers and CSRF, rate limits,
the Socket.IO connection cap, the access log (and ``wsgi.errors`` as log records),
template filters, the OpenAPI spec and the favicon."""

from __future__ import annotations

from flask import Flask

from website.extensions import socketio


def init_app(app: Flask) -> None:
    """Install the app-wide hooks; call after the extensions are bound."""
    from website.http import (
        access,
        body,
        errors,
        favicon,
        openapi,
        ratelimit,
        security,
        sessions,
        timefmt,
    )
    from website.http.bodytimeout import BodyReadTimeout
    from website.http.capacity import ConnectionCap
    from website.http.wsgierrors import ErrorsToLogging
    errors.register(app)
    sessions.register(app)  # the signing serializer built once, not per request
    app.before_request(body.apply_body_limit)  # before any hook reads a body
    access.register(app)
    timefmt.register(app)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(favicon.bp)
    security.register(app)  # CSRF on forms, cross-site API refusal
    ratelimit.rate_limits.init_app(app)  # Flask-Limiter; endpoints: ratelimit.limit()
    cfg = app.config
    app.wsgi_app = ConnectionCap(  # type: ignore[method-assign]
        app.wsgi_app, cfg["SOCKETIO_MAX_CONNECTIONS"], server=socketio.server,
        per_client=cfg["SOCKETIO_MAX_PER_CLIENT"],
        connect_timeout=cfg["SOCKETIO_CONNECT_TIMEOUT"])
    app.wsgi_app = ErrorsToLogging(app.wsgi_app)  # type: ignore[method-assign]
    app.wsgi_app = security.TrustedHostGuard(  # type: ignore[method-assign]
        app.wsgi_app, cfg["TRUSTED_HOSTS"])
    app.wsgi_app = BodyReadTimeout(  # type: ignore[method-assign]
        app.wsgi_app, cfg["REQUEST_BODY_TIMEOUT"])
    # Outermost, so that Socket.IO answers, the cap's 503 and the host check's 400
    # get the headers too.
    app.wsgi_app = security.SecurityHeaders(app.wsgi_app)  # type: ignore[method-assign]
