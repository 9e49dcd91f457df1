"""The dashboard's "Queues and workers" (``shared/fleet.py``): ``GET /api/ops/fleet``,
the snapshot the dashboard's panel renders, and the queue and worker gauges of
``/metrics``.

Who may read it: operators (``OPS_TOKEN``, as ``/dashboard``), or a page holding the
dashboard's signed token (``X-Dashboard-Token``: only the dashboard gets one); anyone
else gets 401. The dashboard's own snapshot (``watchDashboard``) carries the same
fleet snapshot, so the page asks for this one only when no job changed for a while.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import redis
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.fleet import (
    Fleet,
    QueueDepth,
    WorkerSeen,
    job_queue_total,
    read_rq_workers,
    short_worker_name,
)
from website.auth.operators import dashboard_token_ok, ops_allowed, ops_challenge
from website.extensions import CORE, core
from website.ops.monitoring import COLLECTORS

log = logging.getLogger(__name__)
bp = Blueprint("fleet", __name__)
EXTENSION = "jobcast.fleet"
TOKEN_HEADER = "X-Dashboard-Token"


def fleet(app: Flask | None = None) -> Fleet:
    """The app's :class:`Fleet` (built once per app)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    found = app.extensions.get(EXTENSION)
    if found is None:
        cfg, the_core = app.config, app.extensions[CORE]
        found = Fleet(the_core.client, cfg["QUEUE_NAME"],
                      [name for name, kind in the_core.kinds.items() if kind.external],
                      gone_after=cfg["WORKER_GONE_AFTER"], drop_after=cfg["WORKER_DROP_AFTER"],
                      lease_seconds=cfg["LEASE_SECONDS"])
        app.extensions[EXTENSION] = found
    return found  # type: ignore[no-any-return]


def _worker_json(worker: WorkerSeen) -> dict[str, Any]:
    return {**worker.to_json(), "short": short_worker_name(worker.name)}


def snapshot() -> dict[str, Any]:
    """Every queue with its depth, and the workers seen (RQ's noted as they are read)."""
    the_fleet = fleet()
    depths = the_fleet.depths()
    rq_live = read_rq_workers(core.lifecycle.queue.connection)
    the_fleet.note_rq(rq_live)
    now = time.time()
    workers = the_fleet.workers(rq_live, now)
    return {
        "now": now, "goneAfter": the_fleet.gone_after,
        "queueDepth": job_queue_total(depths),
        "queues": [q.to_json() for q in depths if _shown(q)],
        "workersOnline": sum(1 for w in workers if w.online),
        "workers": [_worker_json(w) for w in workers],
    }


def _shown(queue: QueueDepth) -> bool:
    """The dashboard lists every normal lane, and the others when something waits."""
    return queue.depth > 0 or queue.priority == "normal"


@bp.get("/api/ops/fleet")
def fleet_snapshot() -> Response | tuple[Response, int]:
    """The queues and workers, as the dashboard's panel shows them (operators)."""
    if not (ops_allowed() or dashboard_token_ok(request.headers.get(TOKEN_HEADER))):
        return ops_challenge()
    resp = jsonify(snapshot())
    resp.headers["Cache-Control"] = "no-store"
    return resp


class FleetGauges(Collector):
    """``jobcast_queue_depth{queue=...}`` for every queue, and ``jobcast_workers_seen``
    by family and status (the RQ registry's count stays ``jobcast_workers``)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Read the depths (one pipeline) and the workers' record at scrape time."""
        the_fleet = fleet(self.app)
        try:
            depths = the_fleet.depths()
            workers = the_fleet.workers([])
        except redis.RedisError as exc:  # JobGauges says jobcast_redis_up 0
            log.warning("metrics: fleet unavailable: %s", exc)
            return
        depth = GaugeMetricFamily(
            "jobcast_queue_depth", "Jobs waiting in each queue: RQ's lanes, the webhooks' "
            "queue and each external kind's (ext:<kind>[:<priority>])", labels=["queue"])
        for queue in depths:
            depth.add_metric([queue.name], queue.depth)
        yield depth
        seen = GaugeMetricFamily(
            "jobcast_external_workers", "External workers seen within WORKER_GONE_AFTER "
            "(claims and heartbeats)", value=sum(1 for w in workers
                                                 if w.family == "external" and w.online))
        yield seen


def register(app: Flask) -> None:
    """Register the endpoint, and the gauges with ``/metrics`` (before it is created)."""
    app.register_blueprint(bp)
    app.extensions.setdefault(COLLECTORS, []).append(FleetGauges(app))
