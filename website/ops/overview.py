"""The dashboard's overview: counts per state, jobs finished and queue depth over
the last hour or day, and each kind's health (``shared/history.py``).

Who may: operators only (``OPS_TOKEN`` as a bearer token or Basic password; open
when it is unset in development, like the dashboard); 401 otherwise.

* ``GET /api/ops/overview?window=1h|24h``: the snapshot the dashboard's overview
  draws (``overview``); any other window is a 400.
* ``/metrics`` gets the same numbers (``OverviewGauges``): ``jobcast_jobs_ended_total``
  by kind and outcome (the history's totals, which the window's counts come from)
  and ``jobcast_jobs_in_state`` (the state indexes' sizes, the page's tabs).

Everything is read in O(1) per key: ``ZCARD`` of each state index, ``HGETALL`` of the
window's 60 (or 96) buckets, and per kind the members the queued (running) index
shares with the kind's, up to ``COUNT_LIMIT`` (Redis 7's ``ZINTERCARD``, or on Redis
6.2 the same count by ``shared/lua/count_common.lua``, which walks at most that many
members of the smaller set); no job is read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import redis
from flask import Blueprint, Flask, Response, current_app, jsonify, request, url_for
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from shared import history, keys, redisconn, scripts
from shared.errors import Invalid
from shared.protocol import QUEUED, RUNNING, STATES
from website.auth.operators import ops_allowed, ops_challenge
from website.extensions import core
from website.ops.monitoring import COLLECTORS

log = logging.getLogger(__name__)
bp = Blueprint("overview", __name__)
COUNT_LIMIT = 10_000  # a kind's queued (running) count stops here: the page says "10000+"
# ... on Redis 6.2, where a script counts: a Lua lookup per id (about 1 µs), so 6 counts
# over 1M jobs took 80 ms at 10,000 (make bench, 14); 1,000 keeps a snapshot near 10 ms
SCRIPT_COUNT_LIMIT = 1_000
REFRESH_SECONDS = 5  # the page asks for a snapshot at most this often
ZINTERCARD = "jobcast.zintercard"  # app.extensions: whether Redis has it (7 and later)
OPS_TIMEOUT = 2.0  # seconds, for the Redis calls of a /metrics scrape


def state_counts(client: redis.Redis) -> dict[str, int]:
    """Jobs per state: the size of each state index (expired ids leave them within
    a job's TTL, as for the filter's total)."""
    pipe = client.pipeline(transaction=False)
    for state in STATES:
        pipe.zcard(keys.state_index(state))
    return {state: int(n) for state, n in zip(STATES, pipe.execute(), strict=True)}


def _live_per_kind(client: redis.Redis,
                   kinds: list[str]) -> tuple[dict[str, dict[str, int]], int]:
    """Each kind's queued and running jobs, in one round trip, and the limit a count
    stops at (shown as "<limit>+"): ``ZINTERCARD`` up to ``COUNT_LIMIT`` on Redis 7, the
    same count by a script (``count_common.lua``) up to ``SCRIPT_COUNT_LIMIT`` on 6.2
    (the embedded server)."""
    pairs = [[keys.state_index(state), keys.kind_index(kind)]
             for kind in kinds for state in (QUEUED, RUNNING)]
    if _has_zintercard(client):
        limit = COUNT_LIMIT
        pipe = client.pipeline(transaction=False)
        for pair in pairs:
            pipe.zintercard(2, pair, limit=limit)
        counts = [int(n) for n in pipe.execute()]
    else:
        limit = SCRIPT_COUNT_LIMIT
        calls: list[scripts.Call] = [(pair, {"limit": limit}) for pair in pairs]
        counts = [int(count) if complete else limit for count, complete in
                  scripts.run_each(client, scripts.register(client, "count_common"), calls)]
    found = iter(counts)
    return {kind: {QUEUED: next(found), RUNNING: next(found)} for kind in kinds}, limit


def _has_zintercard(client: redis.Redis) -> bool:
    """Whether the store's Redis is 7 or later (asked once per app)."""
    known = current_app.extensions.get(ZINTERCARD)
    if known is None:
        version = str(client.info("server").get("redis_version", "0"))
        known = current_app.extensions[ZINTERCARD] = int(version.split(".")[0]) >= 7
    return bool(known)


def overview(window: str, now: float | None = None) -> dict[str, Any]:
    """The overview's snapshot for ``window`` (``"1h"`` or ``"24h"``; another raises
    :class:`Invalid`)."""
    if window not in history.WINDOWS:
        raise Invalid(f"unknown window {window[:20]!r}", {"window": "is 1h or 24h"})
    stamp = time.time() if now is None else now
    client = core.client
    states = state_counts(client)
    past = history.read_window(client, window, stamp)
    if past.series["depth"]:  # the current bucket shows at least the depth now
        past.series["depth"][-1] = max(past.series["depth"][-1], states[QUEUED])
    declared = sorted(name for name, kind in core.kinds.items() if not kind.hidden)
    names = declared + sorted(set(past.kinds) - set(declared))
    live, limit = _live_per_kind(client, names)
    failures = history.last_failures(client)
    paused = core.lifecycle.pause.paused()
    rows = []
    for name in names:
        ended = past.kinds.get(name, history.KindHistory()).as_dict()
        rows.append({"kind": name, "queued": live[name][QUEUED], "running": live[name][RUNNING],
                     **ended, "lastFailure": failures.get(name),
                     "pausable": name in declared, "paused": name in paused,
                     "list": url_for("dashboard.dashboard", kind=name)})
    return {
        "window": window, "bucketSeconds": past.buckets.width, "now": stamp,
        "refreshSeconds": REFRESH_SECONDS, "countLimit": limit,
        "states": states, "queueDepth": states[QUEUED],
        "series": {"at": past.starts, **{name: past.series[name] for name in
                                         (*history.OUTCOMES, "depth")}},
        "ended": {name: sum(past.series[name]) for name in history.OUTCOMES},
        "kinds": rows,
    }


@bp.get("/api/ops/overview")
def overview_route() -> Response | tuple[Response | str, int]:
    """The overview's snapshot as JSON; ``?window=1h`` (default) or ``24h``."""
    if not ops_allowed():
        return ops_challenge()
    return jsonify(overview(str(request.args.get("window") or "1h")))


class OverviewGauges(Collector):
    """``/metrics``: jobs ended by kind and outcome, and jobs per state index."""

    def __init__(self, url: str) -> None:
        self.client = redisconn.connect(url, decode_responses=True, socket_timeout=OPS_TIMEOUT,
                                        socket_connect_timeout=OPS_TIMEOUT)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        """Yield both families (nothing when Redis does not answer: ``jobcast_redis_up``
        says so)."""
        try:
            ended = history.totals(self.client)
            states = state_counts(self.client)
        except redis.RedisError as exc:
            log.warning("metrics: overview unavailable: %s", exc)
            return
        family = CounterMetricFamily(
            "jobcast_jobs_ended", "Jobs that ended, by kind and outcome (the dashboard's "
            "history counts the same ends)", labels=["kind", "outcome"])
        for (kind, outcome), count in sorted(ended.items()):
            family.add_metric([kind, outcome], count)
        yield family
        gauge = GaugeMetricFamily("jobcast_jobs_in_state",
                                  "Jobs per state index (the dashboard's state tabs)",
                                  labels=["state"])
        for state in STATES:
            gauge.add_metric([state], states[state])
        yield gauge


def register(app: Flask) -> None:
    """Register the route, and the gauges for ``/metrics`` (before ``monitoring``)."""
    app.extensions.setdefault(COLLECTORS, []).append(OverviewGauges(app.config["REDIS_URL"]))
    app.register_blueprint(bp)

