"""Position and wait of queued jobs: ``position`` (1-based) and ``eta`` (seconds).

The model (what really runs before a job, with priority and fair share):

* Workers take every higher priority's queue first, so each job waiting in one
  counts ahead (those that come later are not foreseen).
* A job in its queue (admitted by fair share) has those ahead of it there: its
  index in the list (``LPOS``; fair share keeps a queue to about one job per busy
  tenant, so the list is short).
* A job held back by fair share at index *i* of its tenant's held list enters
  the queue after *i* + 1 of its tenant's jobs have left it, and each time the
  other busy tenants' jobs go first, one each (the queue's length *B* counts the
  busy tenants): about (*i* + 1) × *B* ahead. Tenants that run dry sooner make
  it an overestimate; that is the "roughly".
* A queued job of a paused kind has no position: ``paused`` is true.

``eta`` is about how long until the job starts: ``position`` × the mean run time
of the kind's latest :data:`DURATIONS_KEPT` jobs that succeeded (a Redis list per
kind, written when a job ends: :func:`record_durations`) ÷ the workers that take
them (RQ's registered workers of the queues; for an external kind the external
jobs running now, at least 1). None until the kind has a duration.

:class:`Positions` computes the places of any number of jobs in one pipeline
(plus one read of their states): ``GET /api/jobs/<id>`` for one job, and the web
process's ticker (``website/realtime/positions.py``) each second for the jobs
its own connections watch; nothing scans keys.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from shared import keys
from shared.events import Change
from shared.fairshare import slot_of
from shared.jobstate import JobState
from shared.kinds.policy import PRIORITIES
from shared.priority import RANK, external_queue_key, lane_of, of, rq_queue_name
from shared.protocol import QUEUED, SUCCEEDED

DURATIONS_KEPT = 50  # run times kept per kind (a rolling window)
DURATIONS_TTL = 30 * 24 * 3600  # a kind not run for a month forgets its durations


@dataclass(frozen=True)
class Place:
    """Where a queued job stands: ``position`` (1-based; None when it cannot be told),
    ``eta`` (seconds until it starts, about; None without durations) and ``paused``
    (its kind is paused by an operator)."""

    position: int | None
    eta: int | None
    paused: bool = False
    no_worker: str = ""  # in words, when no worker could take it lately (shared/fleet.py)

    def to_json(self) -> dict[str, Any]:
        """The payload fields: ``position``, ``eta``, ``paused``, ``noWorker``."""
        return {"position": self.position, "eta": self.eta, "paused": self.paused,
                "noWorker": self.no_worker or None}

    def words(self) -> str:
        """The place in words, as the job's page shows it (website/static/js/job-place.js
        says the same): "4th in line, about 50 s"."""
        if self.paused:
            return "Paused by an operator: it waits until its kind is resumed."
        if self.position is None:
            return "Waiting in line."
        text = f"{ordinal(self.position)} in line"
        return text + (f", about {about(self.eta)}" if self.eta is not None else "") + "."


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th… 11th, 12th, 13th… 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def about(seconds: int) -> str:
    """A wait in round words: "50 s", "3 min", "2 h"."""
    if seconds < 60:
        return f"{max(seconds, 1)} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"


def record_durations(client: redis.Redis, changes: Iterable[Change]) -> int:
    """Add the run time of each job that succeeded in ``changes`` to its kind's window
    (from its first report to its end, read from the job's hash: a report's stored
    state does not carry them); how many. Two round trips, only when one succeeded."""
    done = [c.state for c in changes if c.state.state == SUCCEEDED]
    if not done:
        return 0
    read = client.pipeline(transaction=False)
    for state in done:
        read.hmget(keys.job_key(state.job_id), ["started_at", "finished_at"])
    write = client.pipeline(transaction=False)
    count = 0
    for state, (started, ended) in zip(done, read.execute(), strict=True):
        try:
            took = float(ended) - float(started)
        except (TypeError, ValueError):
            continue
        if took < 0:
            continue
        key = keys.durations_key(state.kind)
        write.lpush(key, f"{took:.3f}")
        write.ltrim(key, 0, DURATIONS_KEPT - 1)
        write.expire(key, DURATIONS_TTL)
        count += 1
    if count:
        write.execute()
    return count


def _mean(raw: list[Any]) -> float | None:
    values = []
    for item in raw or []:
        try:
            values.append(float(item))
        except (TypeError, ValueError):
            continue
    return sum(values) / len(values) if values else None


class Positions:
    """Places of queued jobs on ``client`` (``decode_responses=True``); ``queue_base`` is
    ``QUEUE_NAME``; ``external`` tells whether a kind is external."""

    def __init__(self, client: redis.Redis, queue_base: str, external: dict[str, bool],
                 claim_window: int = 90) -> None:
        self.client = client
        self.base = queue_base
        self.external = external
        self.claim_window = claim_window  # WORKER_GONE_AFTER: see no_worker_words

    def _queue_keys(self, kind: str, priority: str) -> list[str]:
        """The queue keys of a job's family, highest first, ending with its own."""
        higher = [p for p in PRIORITIES if RANK[p] <= RANK[priority]]
        if self.external.get(kind, False):
            return [external_queue_key(kind, p) for p in higher]
        return [Queue.redis_queue_namespace_prefix + rq_queue_name(self.base, p) for p in higher]

    def of(self, states: Iterable[JobState]) -> dict[str, Place]:
        """The place of each queued job among ``states`` (others are left out)."""
        queued = [s for s in states if s.state == QUEUED]
        if not queued:
            return {}
        pipe = self.client.pipeline(transaction=False)
        pipe.smembers(keys.PAUSED_KINDS)
        pipe.scard(WORKERS_BY_QUEUE_KEY % self.base)
        pipe.zcard(keys.EXTERNAL_LEASES)
        lengths = sorted({k for s in queued
                          for k in self._queue_keys(s.kind, of(s.extra.get("priority")))})
        for key in lengths:
            pipe.llen(key)
        kinds = sorted({s.kind for s in queued})
        for kind in kinds:
            pipe.lrange(keys.durations_key(kind), 0, DURATIONS_KEPT - 1)
        takers = self._taker_keys(queued)
        for key, field in takers:
            if field:
                pipe.hget(key, field)
            else:
                pipe.scard(key)
        for s in queued:
            priority = of(s.extra.get("priority"))
            pipe.lpos(self._queue_keys(s.kind, priority)[-1], s.job_id)
            lane = lane_of(self.base, s.kind, self.external.get(s.kind, False), priority)
            pipe.lpos(keys.FAIR_PREFIX + "held:" + slot_of(lane, s.extra.get("tenant", "")),
                      s.job_id)
        raw = pipe.execute()
        paused, rq_workers, leases = set(raw[0] or ()), int(raw[1] or 0), int(raw[2] or 0)
        length = dict(zip(lengths, (int(n or 0) for n in raw[3:3 + len(lengths)]), strict=True))
        rest = raw[3 + len(lengths):]
        means = dict(zip(kinds, (_mean(r) for r in rest[:len(kinds)]), strict=True))
        rest = rest[len(kinds):]
        taken = dict(zip(takers, rest[:len(takers)], strict=True))
        found = rest[len(takers):]
        places: dict[str, Place] = {}
        for index, s in enumerate(queued):
            if s.kind in paused:
                places[s.job_id] = Place(None, None, True)
                continue
            family = self._queue_keys(s.kind, of(s.extra.get("priority")))
            higher = sum(length[k] for k in family[:-1])
            in_queue, in_held = found[2 * index], found[2 * index + 1]
            if in_queue is not None:
                ahead: int | None = higher + int(in_queue)
            elif in_held is not None:
                ahead = higher + (int(in_held) + 1) * max(1, length[family[-1]])
            else:  # moving between lists right now, or queued outside fair share
                ahead = None
            workers = max(1, leases if self.external.get(s.kind, False) else rq_workers)
            mean = means.get(s.kind)
            position = None if ahead is None else ahead + 1
            eta = (None if position is None or mean is None
                   else math.ceil(position * mean / workers))
            places[s.job_id] = Place(position, eta, no_worker=self.no_worker_words(s, taken))
        return places

    def _taker(self, state: JobState) -> tuple[str, str]:
        """Where to read who could take the job: its external kind's last claim time
        (a hash field), or the RQ workers listening on its queue (a set: no field)."""
        if self.external.get(state.kind, False):
            return keys.FLEET_KIND_CLAIMS, state.kind
        queue = rq_queue_name(self.base, of(state.extra.get("priority")))
        return WORKERS_BY_QUEUE_KEY % queue, ""

    def _taker_keys(self, queued: list[JobState]) -> list[tuple[str, str]]:
        return sorted({self._taker(s) for s in queued})

    def no_worker_words(self, state: JobState, taken: dict[tuple[str, str], Any],
                        now: float | None = None) -> str:
        """'' when a worker could take the job lately; else why not, in words: no claim
        of its external kind within ``claim_window`` seconds, or no RQ worker on its queue."""
        key, field = self._taker(state)
        value = taken.get((key, field))
        if not field:
            if int(value or 0) > 0:
                return ""
            queue = rq_queue_name(self.base, of(state.extra.get("priority")))
            return f"No worker is listening on its queue ({queue}): it waits until one starts."
        try:
            last = float(value) if value is not None else None
        except (TypeError, ValueError):
            last = None
        stamp = time.time() if now is None else now
        if last is not None and stamp - last <= self.claim_window:
            return ""
        return f"No worker has claimed {state.kind} jobs in the last {self.claim_window} s."
