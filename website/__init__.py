"""Jobcast web site: the Flask application factory."""

from __future__ import annotations

from typing import Any

import socketio as socketio_lib
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from shared.config import Config
from website.extensions import redis_ext, socketio
from website.http.access import configure_logging


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

    from website import http, jobs, ops, realtime, snippets, workers

    realtime.init_app(app)
    http.init_app(app)
    jobs.init_app(app)
    workers.init_app(app)
    snippets.init_app(app)
    ops.init_app(app)
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies:  # client address, scheme and host from the proxies' X-Forwarded-* headers
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    return app
