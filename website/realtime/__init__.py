"""Socket.IO: rooms per job and batch (join first, then read), the relay of the
worker's own pushes, the resync after a message-queue outage, the connection cap
and per-connection limits, and the names the pages use."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app

from shared.protocol import browser_contract
from website.extensions import socketio
from website.realtime import positions, relay, resync, sockets
from website.realtime.connections import ConnectionCap


def init_app(app: Flask) -> None:
    """Attach the connect and subscribe handlers to the bound Socket.IO server, cap its
    sessions (a WSGI layer in front of it), and give the templates the names the page
    scripts use."""
    cfg = app.config
    app.wsgi_app = ConnectionCap(  # type: ignore[method-assign]
        app.wsgi_app, cfg["SOCKETIO_MAX_CONNECTIONS"], server=socketio.server,
        per_client=cfg["SOCKETIO_MAX_PER_CLIENT"], connect_timeout=cfg["SOCKETIO_CONNECT_TIMEOUT"],
        watcher_share=cfg["SOCKETIO_WATCHER_SHARE"], idle_join=cfg["SOCKETIO_IDLE_JOIN_SECONDS"])
    sockets.register()
    relay.init_app(app)  # states the worker stored without the site -> open pages
    positions.init_app(app)  # queued jobs' places -> their open pages, once a second
    resync.init_app(app)  # after a message-queue outage: stored states -> this process's pages
    app.add_template_global(page_contract, "browser_contract")


def page_contract() -> dict[str, Any]:
    """The names the page scripts use (``shared.protocol.browser_contract``), with the
    events features added (``app.extensions["jobcast.page_events"]``)."""
    return browser_contract(current_app.extensions.get("jobcast.page_events"))
