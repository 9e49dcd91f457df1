"""Operations: the live dashboard, health and metrics, and operator access."""

from __future__ import annotations

from flask import Flask

from website.extensions import socketio


def init_app(app: Flask) -> None:
    """Register /dashboard (with its Socket.IO handler), /healthz and /metrics."""
    from website.ops import dashboard, monitoring
    monitoring.register(app, socketio.server)
    dashboard.register(app)
