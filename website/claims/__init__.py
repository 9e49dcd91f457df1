"""The external workers' API: jobs of external kinds claimed over HTTP, with leases
(docs/workers.md). ``POST /api/workers/claim`` and ``/api/workers/heartbeat``."""

from __future__ import annotations

from flask import Flask

from website.claims import api
from website.claims.notifier import NOTIFIER, Notifier, WaitingClaims
from website.ops.monitoring import COLLECTORS


def init_app(app: Flask) -> None:
    """Bind this process's claim notifier; register the API."""
    notifier = app.extensions[NOTIFIER] = Notifier(app)
    app.extensions.setdefault(COLLECTORS, []).append(WaitingClaims(notifier))
    app.register_blueprint(api.bp)
