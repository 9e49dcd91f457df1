"""Health and metrics: ``GET /healthz`` and ``GET /metrics`` (Prometheus text).

Every app gets its own :class:`prometheus_client.CollectorRegistry`, so
``create_app`` can run many times in one process (tests). Counters are per web
process; the job, queue and worker gauges are read from Redis at scrape time
through a client with short timeouts, so a dead Redis makes a scrape report
``jobcast_redis_up 0`` instead of hanging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import redis
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from rq import Queue, Worker

from shared import redisconn
from shared.capacity import read_memory
from shared.protocol import APPLIED_HEADER, STATES
from shared.rqconf import SERIALIZER, rq_queue
from shared.store import JobStore
from shared.watch import stalled_count
from website.auth.operators import ops_allowed, ops_challenge
from website.extensions import CORE

log = logging.getLogger(__name__)
bp = Blueprint("monitoring", __name__)
EXTENSION = "jobcast.monitoring"
CALLBACK_RESULTS = ("applied", "ignored", "refused", "error")
OPS_TIMEOUT = 2.0  # seconds, for the Redis calls of /healthz and /metrics
COLLECTORS = "jobcast.collectors"  # app.extensions list: more collectors for /metrics


class JobGauges(Collector):
    """Scrape-time gauges read from Redis: jobs by state, RQ workers, stalled jobs."""

    def __init__(self, ops: Ops, scan: int) -> None:
        self.ops = ops
        self.scan = scan

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield the gauges; ``jobcast_redis_up`` says whether they could be read."""
        up = GaugeMetricFamily("jobcast_redis_up", "1 when Redis answered this scrape")
        try:
            counts = self.ops.store.state_counts(self.scan)
            workers = Worker.count(queue=self.ops.queue)
            stalled = stalled_count(self.ops.store.client)
        except redis.RedisError as exc:
            log.warning("metrics: Redis unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily(
            "jobcast_jobs", f"Jobs by state among the {self.scan} most recent jobs",
            labels=["state"])
        for state in STATES:
            jobs.add_metric([state], counts.get(state, 0))
        yield jobs
        # jobcast_queue_depth{queue=...}: every queue's, website/ops/fleet.py
        yield GaugeMetricFamily("jobcast_workers", "RQ workers registered on the queue",
                                value=workers)
        yield GaugeMetricFamily("jobcast_jobs_stalled",
                                "Running jobs that sent no report within their stall_after",
                                value=stalled)


class Ops:
    """Per-app metrics and the short-timeout Redis clients of the ops endpoints."""

    def __init__(self, app: Flask, socket_server: Any) -> None:
        url = app.config["REDIS_URL"]
        opts: dict[str, Any] = {"socket_timeout": OPS_TIMEOUT,
                                "socket_connect_timeout": OPS_TIMEOUT}
        self.raw = redisconn.connect(url, **opts)
        self.store = JobStore(redisconn.connect(url, decode_responses=True, **opts),
                              ttl=app.config["JOB_TTL"])
        self.queue = rq_queue(app.config["QUEUE_NAME"], self.raw)
        self.registry = CollectorRegistry(auto_describe=False)
        self.callbacks = Counter(
            "jobcast_callbacks", "Progress callbacks by result "
            "(applied, ignored as duplicate or after the end, refused 4xx, error 5xx)",
            ["result"], registry=self.registry)
        for result in CALLBACK_RESULTS:
            self.callbacks.labels(result)
        self.emit_latency = Histogram(
            "jobcast_callback_emit_seconds",
            "From receiving a progress callback to having emitted its update",
            buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1.0, 2.5),
            registry=self.registry)
        self.control = Counter("jobcast_job_control", "Cancel and retry requests by result",
                               ["action", "result"], registry=self.registry)
        self.registry.register(_ClientsCollector(socket_server))
        self.registry.register(RoundTrips(app.extensions[CORE].lifecycle.store.coalescer))
        self.registry.register(JobGauges(self, app.config["METRICS_JOB_SCAN"]))
        for collector in app.extensions.get(COLLECTORS, ()):  # other features' gauges
            self.registry.register(collector)


class RoundTrips(Collector):
    """Single progress reports applied, and the Redis round trips they took (their
    quotient is the mean batch; ``shared/coalesce.py``)."""

    def __init__(self, coalescer: Any) -> None:
        self.coalescer = coalescer

    def collect(self) -> Iterator[CounterMetricFamily]:
        """Yield the two counters."""
        yield CounterMetricFamily("jobcast_report_round_trips",
                                  "Redis round trips that applied single progress reports",
                                  value=self.coalescer.round_trips)
        yield CounterMetricFamily("jobcast_report_applies",
                                  "single progress reports applied through those round trips",
                                  value=self.coalescer.reports)


class _ClientsCollector(Collector):
    """``jobcast_socketio_clients``: connections to this process's Socket.IO server."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Count the sessions in the default namespace."""
        rooms = getattr(getattr(self.server, "manager", None), "rooms", {}) or {}
        count = len(rooms.get("/", {}).get(None, {}))
        yield GaugeMetricFamily("jobcast_socketio_clients",
                                "Socket.IO clients connected to this web process", value=count)


def ops() -> Ops:
    """The current app's :class:`Ops`."""
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


def observe_emit(started: float) -> None:
    """Record the callback→emit latency of an update received at ``started``."""
    ops().emit_latency.observe(time.perf_counter() - started)


def count_control(action: str, result: str) -> None:
    """Count one cancel or retry request."""
    ops().control.labels(action, result).inc()


def _count_callback(response: Response) -> Response:
    if request.endpoint == "progress.progress":
        status = response.status_code
        if status < 300:
            result = "applied" if response.headers.get(APPLIED_HEADER) == "1" else "ignored"
        elif status < 500:
            result = "refused"
        else:
            result = "error"
        ops().callbacks.labels(result).inc()
    return response


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Web up, Redis reachable, a worker seen recently: 200, else 503.

    Anyone (a load balancer) gets the status alone, ``{"status": "ok"}`` or
    ``{"status": "unavailable"}``; operators (``ops_allowed``) get the detail too:
    Redis's latency and memory against ``maxmemory`` and the store's limit, the
    workers seen and their names, which would help a stranger time a fill-up."""
    cfg = current_app.config
    state = ops()
    body: dict[str, Any] = {"web": {"ok": True}}
    started = time.perf_counter()
    try:
        state.raw.ping()
        body["redis"] = {"ok": True,
                         "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
        # Memory in use against the limits (a full store refuses new jobs).
        body["redis"]["memory"] = read_memory(state.raw, cfg["STORE_MAX_BYTES"]).as_dict()
    except redis.RedisError as exc:  # the detail (host, port) goes to the log only
        log.warning("health check: Redis unreachable: %s: %s", type(exc).__name__, exc)
        body["redis"] = {"ok": False, "error": "Redis is unreachable"}
    max_age = cfg["HEALTH_WORKER_MAX_AGE"]
    if not max_age:
        body["workers"] = {"ok": True, "checked": False}
    elif not body["redis"]["ok"]:
        body["workers"] = {"ok": False, "error": "Redis is unreachable"}
    else:
        body["workers"] = _workers_detail(state.queue, max_age)
    healthy = all(part["ok"] for part in body.values())
    body["status"] = "ok" if healthy else "unavailable"
    if not healthy:
        log.warning("health check failed: %s", body)
    shown = body if ops_allowed() else {"status": body["status"]}
    return jsonify(shown), 200 if healthy else 503


def _workers_detail(queue: Queue, max_age: int) -> dict[str, Any]:
    try:
        workers = Worker.all(queue=queue, serializer=SERIALIZER)
    except redis.RedisError as exc:
        log.warning("health check: cannot list workers: %s: %s", type(exc).__name__, exc)
        return {"ok": False, "error": "Redis is unreachable"}
    now = datetime.now(UTC)
    fresh = []
    for worker in workers:
        beat = worker.last_heartbeat
        if beat is None:
            continue
        if beat.tzinfo is None:
            beat = beat.replace(tzinfo=UTC)
        if (now - beat).total_seconds() <= max_age:
            fresh.append(worker.name)
    return {"ok": bool(fresh), "seen": len(fresh), "registered": len(workers),
            "max_age_seconds": max_age, "names": sorted(fresh)[:20]}


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition of this app's registry."""
    if not ops_allowed():
        return ops_challenge()
    return Response(generate_latest(ops().registry), content_type=CONTENT_TYPE_LATEST)


def register(app: Flask, socket_server: Any) -> None:
    """Create the app's metrics and register the endpoints and the callback counter."""
    app.extensions[EXTENSION] = Ops(app, socket_server)
    app.after_request(_count_callback)
    app.register_blueprint(bp)
