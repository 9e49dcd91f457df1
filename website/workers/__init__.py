"""External workers: jobs of external kinds claimed over HTTP, with leases
(docs/workers.md). ``POST /api/workers/claim`` and ``/api/workers/heartbeat``."""

from __future__ import annotations

import threading

from flask import Flask

from shared.external import ExternalQueues
from website.ops.monitoring import COLLECTORS
from website.workers import api, coalesce, queues
from website.workers.notifier import Notifier, WaitingClaims


def init_app(app: Flask) -> None:
    """Bind the external queues and this process's claim notifier; register the API."""
    client = app.extensions["jobcast.redis"]["client"]
    app.extensions[queues.EXTENSION] = ExternalQueues(
        client, lease_seconds=app.config["LEASE_SECONDS"],
        max_attempts=app.config["MAX_ATTEMPTS"])
    notifier = app.extensions[queues.NOTIFIER] = Notifier(app)
    app.extensions[queues.SWEEPING] = threading.Lock()
    app.extensions.setdefault(COLLECTORS, []).append(WaitingClaims(notifier))
    coalescer = app.extensions[coalesce.EXTENSION] = coalesce.ReportCoalescer(
        coalesce.OwnConnection(app.extensions["jobcast.redis"]["store"], client.connection_pool))
    app.extensions[COLLECTORS].append(coalesce.RoundTrips(coalescer))
    app.register_blueprint(api.bp)
