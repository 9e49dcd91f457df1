"""HTTP concerns, for every route: errors, security headers, CSRF and the host check,
request bodies (size, shape, read timeout), rate limits, the access log, cookie
sessions, the OpenAPI spec, the favicon, and the times the templates show."""

from __future__ import annotations

from flask import Flask

from website.http import access, answers, body, favicon, openapi, ratelimit, security, sessions, timefmt


def init_app(app: Flask) -> None:
    """Install the app-wide hooks and the edge middleware; call after the extensions
    are bound (and after the realtime feature put its connection cap around them)."""
    answers.register(app)
    sessions.register(app)  # the signing serializer built once, not per request
    app.before_request(body.apply_body_limit)  # before any hook reads a body
    access.register(app)
    timefmt.register(app)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(favicon.bp)
    security.register(app)  # CSRF on forms, cross-site API refusal
    ratelimit.rate_limits.init_app(app)  # Flask-Limiter; endpoints: ratelimit.limit()
    cfg = app.config
    app.wsgi_app = body.BodyReadTimeout(  # type: ignore[method-assign]
        app.wsgi_app, cfg["REQUEST_BODY_TIMEOUT"])
    # Outermost, so that Socket.IO answers, the cap's 503 and the host check's 400
    # get the headers too.
    app.wsgi_app = security.Edge(app.wsgi_app, cfg["TRUSTED_HOSTS"])  # type: ignore[method-assign]
