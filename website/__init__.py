"""Jobcast web site: the Flask application factory."""

from __future__ import annotations

from typing import Any

import socketio as socketio_lib
from flask import Flask

from shared.config import Config
from website.access import configure_logging
from website.capacity import ConnectionCap
from website.extensions import redis_ext, socketio


def create_app(config: Config | dict[str, Any] | None = None) -> Flask:
    """Build the site. ``config`` is a :class:`Config` or a dict of overrides."""
    if not isinstance(config, Config):
        config = Config(**(config or {}))
    app = Flask(__name__)
    app.config.from_object(config)
    app.config["MAX_CONTENT_LENGTH"] = 512 * 1024
    configure_logging(app.config["LOG_LEVEL"])

    redis_ext.init_app(app)
    queue_url = app.config["SOCKETIO_MESSAGE_QUEUE"]
    manager: socketio_lib.Manager = (
        socketio_lib.RedisManager(queue_url, channel="jobcast") if queue_url
        else socketio_lib.Manager()
    )
    socketio.init_app(app, async_mode=app.config["ASYNC_MODE"], client_manager=manager)
    engineio_server = socketio.server.eio
    app.wsgi_app = ConnectionCap(  # type: ignore[method-assign]
        app.wsgi_app, app.config["SOCKETIO_MAX_CONNECTIONS"],
        sessions=lambda: len(engineio_server.sockets))

    from website import api, errors, jobs, ratelimit, security, snippets, snippets_api, sockets

    app.register_blueprint(jobs.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(snippets.bp)
    app.register_blueprint(snippets_api.bp)
    errors.register(app)
    sockets.register()
    _init_ops(app)
    security.init_app(app)  # CSRF on forms, cross-site API refusal, security headers
    ratelimit.init_app(app)
    ratelimit.limit(app, "jobs", "jobs.create", "api.create_job",
                    "control.retry_page", "control.retry_api")
    ratelimit.limit(app, "snippets", "snippets.create", "snippets_api.create_snippet")
    from website import relay  # states the worker's fallback stored -> open pages
    relay.init_app(app)
    return app


def _init_ops(app: Flask) -> None:
    """Operations: request log, health, metrics, dashboard, job control, time filters."""
    from website import access, control, dashboard, monitoring, timefmt

    access.init_app(app)
    monitoring.init_app(app, socketio.server)
    dashboard.init_app(app)
    app.register_blueprint(control.bp)
    timefmt.register(app)
