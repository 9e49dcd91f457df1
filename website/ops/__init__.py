"""Operations: the live dashboard, health and metrics, and operator access."""

from __future__ import annotations

from flask import Flask

from website.extensions import socketio
from website.ops import dashboard, finder, jobdetail, monitoring, overview, pausing, recurring


def init_app(app: Flask) -> None:
    """Register /dashboard (with its Socket.IO handler), GET /api/jobs, bulk actions,
    the operators' job page, recurring schedules, pausing kinds, /healthz and /metrics,
    and the dashboard's overview (its gauges first: /metrics shows them too)."""
    overview.register(app)
    monitoring.register(app, socketio.server)
    dashboard.register(app)
    app.register_blueprint(finder.bp)
    app.register_blueprint(finder.bulk_bp)
    app.register_blueprint(jobdetail.bp)
    app.register_blueprint(recurring.bp)
    app.register_blueprint(pausing.bp)
