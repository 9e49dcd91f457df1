"""Every queue and worker: the depth of each queue and the workers seen, for the
dashboard's "Queues and workers" (``website/ops/fleet.py``) and ``/metrics``.

* **Queues.** RQ's three priority lanes of the jobs (``shared/priority.py``), the
  webhooks' queue (shown apart: deliveries are no jobs) and each external kind's
  lists (``shared/claimqueue.py``). Read with one ``LLEN`` each, in one pipeline:
  nothing scans jobs.
* **External workers** are noted by the name they claim with, when they claim
  (``POST /api/workers/claim``: the kinds asked for, and the job given) and when they
  heartbeat (the jobs still held). The job a worker holds and its lease's expiry
  are read from the lease set (``EXTERNAL_LEASES``) when listed: a worker whose job's
  lease has not lapsed is busy, since its reports renew it (reports note nothing:
  they are the hot path).
* **RQ workers** are read from RQ's own registry (``Worker.all``, JSON serializer)
  and noted the same way, so that one RQ has forgotten (it stopped, or its key
  expired) is still listed, as gone.

A worker unseen for ``WORKER_GONE_AFTER`` seconds is listed as gone; after
``WORKER_DROP_AFTER`` it is dropped. The record is bounded whatever the fleet does:
a sorted set of workers by last-seen time and a small hash per worker, at most
:data:`MAX_WORKERS`, trimmed by ``shared/lua/fleet_seen.lua`` each time one is seen
(about 300 bytes a worker: ~150 KB at the cap). Each external kind's last claim time
is kept too (one hash field per kind): a queued job's page says when no worker has
claimed its kind lately (``shared/position.py``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import redis
from rq import Queue, Worker

from shared import keys, scripts
from shared.kinds.policy import DEFAULT_PRIORITY, PRIORITIES
from shared.priority import external_queue_key, rq_queue_names
from shared.rqconf import SERIALIZER
from shared.webhooks import queue_name as webhooks_queue_name

MAX_WORKERS = 500  # workers remembered at most (the least recently seen go first)
LISTED = 100  # workers a snapshot lists at most, most recently seen first
EXTERNAL = "external"
RQ = "rq"
WEBHOOKS = "webhooks"
GONE = "gone"


@dataclass(frozen=True)
class QueueDepth:
    """One queue: its ``name`` (as ``/metrics`` labels it), its ``family`` (``rq``,
    ``webhooks`` or ``external``), the kind of an external one, and its ``depth``."""

    name: str
    family: str
    depth: int
    kind: str = ""
    priority: str = DEFAULT_PRIORITY

    def to_json(self) -> dict[str, Any]:
        """As the fleet snapshot lists it."""
        return {"name": self.name, "family": self.family, "depth": self.depth,
                "kind": self.kind, "priority": self.priority}


@dataclass(frozen=True)
class WorkerSeen:
    """A worker as listed: ``status`` is RQ's state (``idle``, ``busy``…) for a worker RQ
    lists, ``busy``/``idle`` for an external one seen lately, else ``gone``."""

    name: str
    family: str
    status: str
    last_seen: float
    job: str = ""
    lease_until: float | None = None
    does: str = ""  # an external worker's kinds, an RQ worker's queues (comma-separated)

    @property
    def online(self) -> bool:
        """Not gone."""
        return self.status != GONE

    def to_json(self) -> dict[str, Any]:
        """As the fleet snapshot lists it."""
        return {"name": self.name, "family": self.family, "status": self.status,
                "lastSeen": self.last_seen, "job": self.job, "leaseUntil": self.lease_until,
                "does": self.does}


@dataclass(frozen=True)
class RqSeen:
    """What RQ's registry says of one of its workers."""

    name: str
    state: str
    job: str
    last_heartbeat: float
    queues: tuple[str, ...]


def queue_keys(base: str, external_kinds: Iterable[str]) -> list[tuple[QueueDepth, str]]:
    """Every queue of the site (depth 0) with its Redis key: RQ's lanes, highest first,
    the webhooks' queue, then each external kind's lists (high, normal, low)."""
    prefix = Queue.redis_queue_namespace_prefix
    rows = [(QueueDepth(name, RQ, 0, priority=priority), prefix + name)
            for name, priority in zip(rq_queue_names(base), PRIORITIES, strict=True)]
    hooks = webhooks_queue_name(base)
    rows.append((QueueDepth(hooks, WEBHOOKS, 0), prefix + hooks))
    for kind in sorted(external_kinds):
        for priority in PRIORITIES:
            name = f"ext:{kind}" + ("" if priority == DEFAULT_PRIORITY else f":{priority}")
            rows.append((QueueDepth(name, EXTERNAL, 0, kind=kind, priority=priority),
                         external_queue_key(kind, priority)))
    return rows


def read_rq_workers(connection: redis.Redis) -> list[RqSeen]:
    """Every worker in RQ's registry (``connection``: a bytes client), with its job."""
    seen = []
    for worker in Worker.all(connection=connection, serializer=SERIALIZER):
        beat = worker.last_heartbeat
        stamp = beat.replace(tzinfo=beat.tzinfo or UTC).timestamp() if beat else time.time()
        state = worker.get_state()
        seen.append(RqSeen(name=worker.name, state=str(getattr(state, "value", state)),
                           job=worker.get_current_job_id() or "", last_heartbeat=stamp,
                           queues=tuple(worker.queue_names())))
    return seen


class Fleet:
    """The queues and workers on ``client`` (``decode_responses=True``).

    ``queue_base`` is ``QUEUE_NAME``; ``external_kinds`` the external kinds' names.
    """

    def __init__(self, client: redis.Redis, queue_base: str, external_kinds: Iterable[str],
                 gone_after: int = 90, drop_after: int = 3600, lease_seconds: int = 30) -> None:
        self.client = client
        self.base = queue_base
        self.external_kinds = sorted(external_kinds)
        self.gone_after = gone_after
        self.drop_after = max(drop_after, gone_after)
        self.max_workers = MAX_WORKERS
        self.lease_seconds = lease_seconds  # LEASE_SECONDS: a lease's last renewal from its deadline
        self._seen = scripts.register(client, "fleet_seen")

    # -- noting workers -------------------------------------------------------------

    def _seen_call(self, member: str, now: float, fields: dict[str, str],
                   kinds: Iterable[str] = ()) -> scripts.Call:
        return ([keys.FLEET_WORKERS, keys.FLEET_KIND_CLAIMS],
                {"member": member, "now": now, "fields": fields, "kinds": list(kinds),
                 "prefix": keys.FLEET_WORKER_PREFIX, "cutoff": now - self.drop_after,
                 "max": self.max_workers, "ttl": self.drop_after})

    def claiming(self, worker: str, kinds: list[str], job_id: str = "",
                 now: float | None = None) -> None:
        """``worker`` claimed ``kinds`` now (and was given ``job_id``, when one)."""
        stamp = time.time() if now is None else now
        fields = {"name": worker, "kinds": ",".join(kinds)}
        if job_id:
            fields["job"] = job_id
        keys_, args = self._seen_call(f"ext:{worker}", stamp, fields, kinds)
        scripts.run(self._seen, keys_, args)

    def heartbeat(self, worker: str, held: list[str], now: float | None = None) -> None:
        """``worker`` renewed its leases now; ``held`` are the jobs it still holds."""
        stamp = time.time() if now is None else now
        keys_, args = self._seen_call(f"ext:{worker}", stamp,
                                      {"name": worker, "job": held[0] if held else ""})
        scripts.run(self._seen, keys_, args)

    def note_rq(self, workers: list[RqSeen]) -> None:
        """Note what RQ's registry lists (one round trip)."""
        if workers:
            scripts.run_each(self.client, self._seen, [
                self._seen_call(f"rq:{w.name}", w.last_heartbeat,
                                {"name": w.name, "job": w.job, "kinds": ",".join(w.queues)})
                for w in workers])

    # -- reading ----------------------------------------------------------------------

    def depths(self) -> list[QueueDepth]:
        """Every queue and how many wait in it (one pipeline of ``LLEN``)."""
        rows = queue_keys(self.base, self.external_kinds)
        pipe = self.client.pipeline(transaction=False)
        for _row, key in rows:
            pipe.llen(key)
        return [QueueDepth(row.name, row.family, int(n or 0), row.kind, row.priority)
                for (row, _key), n in zip(rows, pipe.execute(), strict=True)]

    def last_claims(self, kinds: list[str]) -> dict[str, float | None]:
        """When a worker last claimed each of ``kinds`` (None: not within the record)."""
        if not kinds:
            return {}
        raw = self.client.hmget(keys.FLEET_KIND_CLAIMS, kinds)
        return {kind: _number(value) for kind, value in zip(kinds, raw, strict=True)}

    def workers(self, rq_live: list[RqSeen], now: float | None = None) -> list[WorkerSeen]:
        """The workers seen, most recently first (at most :data:`LISTED`): RQ's live ones
        with their state, the others by when they were last seen."""
        stamp = time.time() if now is None else now
        live = {w.name: w for w in rq_live}
        raw: Any = self.client.zrevrangebyscore(keys.FLEET_WORKERS, "+inf",
                                                stamp - self.drop_after, start=0, num=LISTED,
                                                withscores=True)
        members: list[tuple[str, float]] = [(str(m), float(score)) for m, score in raw]
        pipe = self.client.pipeline(transaction=False)
        for member, _score in members:
            pipe.hgetall(keys.FLEET_WORKER_PREFIX + member)
        hashes: list[dict[str, str]] = pipe.execute() if members else []
        jobs = [h.get("job", "") for (m, _s), h in zip(members, hashes, strict=True)
                if m.startswith("ext:")]
        leases = self._leases([j for j in jobs if j])
        listed: list[WorkerSeen] = []
        for (member, score), fields in zip(members, hashes, strict=True):
            family, _, name = member.partition(":")
            if family == RQ:
                listed.append(self._rq_worker(name, float(score), fields, live.get(name)))
            else:
                listed.append(self._external_worker(name, float(score), fields, leases, stamp))
        noted = {w.name for w in listed if w.family == RQ}
        for w in rq_live:  # listed by RQ, not noted yet (a snapshot that did not note)
            if w.name not in noted:
                listed.append(self._rq_worker(w.name, w.last_heartbeat, {}, w))
        return listed

    @staticmethod
    def _rq_worker(name: str, seen: float, fields: dict[str, str],
                   live: RqSeen | None) -> WorkerSeen:
        if live is None:
            return WorkerSeen(name, RQ, GONE, seen, does=fields.get("kinds", ""))
        return WorkerSeen(name, RQ, live.state, max(seen, live.last_heartbeat), job=live.job,
                          does=",".join(live.queues))

    def _external_worker(self, name: str, seen: float, fields: dict[str, str],
                         leases: dict[str, tuple[float, str]], now: float) -> WorkerSeen:
        job = fields.get("job", "")
        lease = leases.get(job)
        # Still its job, on a lease not lapsed: its reports renew the lease, so it is
        # alive (last seen at the lease's last renewal, at least), however long since
        # it last claimed or heartbeat.
        holds = lease is not None and lease[1] == name and lease[0] > now
        if lease is not None and holds:
            seen = max(seen, lease[0] - self.lease_seconds)
            status = "busy"
        else:
            status = GONE if now - seen > self.gone_after else "idle"
        return WorkerSeen(name, EXTERNAL, status, seen, job=job if holds else "",
                          lease_until=lease[0] if lease is not None and holds else None,
                          does=fields.get("kinds", ""))

    def _leases(self, job_ids: list[str]) -> dict[str, tuple[float, str]]:
        """Each job's lease deadline and the worker it was given to (jobs with a lease)."""
        if not job_ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.zscore(keys.EXTERNAL_LEASES, job_id)
            pipe.hget(keys.job_key(job_id), "worker")
        raw = pipe.execute()
        found = {}
        for index, job_id in enumerate(job_ids):
            deadline, worker = raw[2 * index], raw[2 * index + 1]
            if deadline is not None:
                found[job_id] = (float(deadline), str(worker or ""))
        return found


def _number(value: object) -> float | None:
    try:
        return float(value) if value is not None else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def job_queue_total(depths: list[QueueDepth]) -> int:
    """Jobs waiting in every job queue (RQ's and the external kinds'; not the webhooks')."""
    return sum(q.depth for q in depths if q.family != WEBHOOKS)


WORKER_NAME_SHOWN = 24
_RQ_DEFAULT_NAME = re.compile(r"[0-9a-f]{32}")


def short_worker_name(name: str) -> str:
    """A worker's name as the dashboard shows it (the full one goes in a ``title``).

    RQ names an unnamed worker with 32 hex digits: the first 8 are enough to tell
    workers apart. A chosen name (``host.pid``, ``worker-2``) is kept, cut at 24.
    """
    if _RQ_DEFAULT_NAME.fullmatch(name):
        return name[:8]
    if len(name) <= WORKER_NAME_SHOWN:
        return name
    return name[: WORKER_NAME_SHOWN - 1] + "…"
