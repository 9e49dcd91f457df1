"""Jobcast web site: the Flask application factory."""

from __future__ import annotations

import logging
from typing import Any

import socketio as socketio_lib
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from shared import redisconn
from shared.config import Config
from shared.push import SOCKETIO_CHANNEL
from website import claims, http, jobs, keys, ops, progress, realtime, snippets
from website.extensions import init_core, socketio
from website.http.access import configure_logging
from website.http.localonly import ThisMachineOnly

log = logging.getLogger(__name__)
# The largest Socket.IO message a client may send: the protocol's are a few
# hundred bytes (subscribe, watch with a dashboard token).
SOCKETIO_MAX_MESSAGE = 4096


def create_app(config: Config | dict[str, Any] | None = None) -> Flask:
    """Build the site. ``config`` is a :class:`Config` or a dict of overrides."""
    if not isinstance(config, Config):
        config = Config(**(config or {}))
    app = Flask(__name__)
    app.config.from_object(config)
    app.config["MAX_CONTENT_LENGTH"] = 512 * 1024
    app.config["TRUSTED_HOSTS"] = config.TRUSTED_HOSTS or None  # others: 400
    configure_logging(app.config["LOG_LEVEL"])
    _warn_about_development_settings(config)

    init_core(app, config)
    queue_url, queue_options = redisconn.message_queue(app.config["SOCKETIO_MESSAGE_QUEUE"])
    manager: socketio_lib.Manager = (
        socketio_lib.RedisManager(queue_url, channel=SOCKETIO_CHANNEL,
                                  redis_options=queue_options)
        if queue_url else socketio_lib.Manager()
    )
    socketio.init_app(app, async_mode=app.config["ASYNC_MODE"], client_manager=manager,
                      max_http_buffer_size=SOCKETIO_MAX_MESSAGE)

    realtime.init_app(app)
    http.init_app(app)
    jobs.init_app(app)
    progress.init_app(app)
    claims.init_app(app)
    snippets.init_app(app)
    ops.init_app(app)
    keys.init_app(app)
    proxies = app.config["TRUSTED_PROXIES"]
    if proxies:  # client address, scheme and host from the proxies' X-Forwarded-* headers
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    if config.serves_this_machine_only:  # outermost: the TCP peer, before any proxy header
        app.wsgi_app = ThisMachineOnly(app.wsgi_app)  # type: ignore[method-assign]
    return app


def _warn_about_development_settings(config: Config) -> None:
    if config.uses_dev_secrets:
        log.warning("DEVELOPMENT SECRETS IN USE: SECRET_KEY and/or PROGRESS_TOKEN are the "
                    "built-in development values; anyone can forge sessions and reports. "
                    "Set them in the environment before running anywhere but locally.")
    if not config.OPS_TOKEN:
        if config.is_development:
            log.warning("OPS_TOKEN is not set: /dashboard and /metrics are open to anyone "
                        "(development only; production keeps them closed)")
        else:
            log.warning("OPS_TOKEN is not set: /dashboard and /metrics answer 401")
