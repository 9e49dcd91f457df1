"""Operations: the live dashboard, health and metrics, and operator access."""

from __future__ import annotations

from flask import Flask

from website.extensions import socketio
from website.ops import dashboard, finder, fleet, jobdetail, monitoring, overview, pausing, recurring


def init_app(app: Flask) -> None:
    """Register /dashboard (with its Socket.IO handler), GET /api/jobs, bulk actions,
    the operators' job page, recurring schedules, pausing kinds, the queues and workers
    (GET /api/ops/fleet), /healthz and /metrics, and the dashboard's overview (the gauges
    of both first: /metrics shows them too)."""
    fleet.register(app)  # GET /api/ops/fleet; its gauges join /metrics (registered first)
    overview.register(app)
    monitoring.register(app, socketio.server)
    dashboard.register(app)
    app.register_blueprint(finder.bp)
    app.register_blueprint(finder.bulk_bp)
    app.register_blueprint(jobdetail.bp)
    app.register_blueprint(recurring.bp)
    app.register_blueprint(pausing.bp)
