"""Fair share between tenants: one tenant's thousands of jobs never push another's back.

A *lane* is a queue workers take jobs from: an RQ queue (``rq:<name>``) or an
external kind's queue (``ext:<kind>``). A *tenant* is who a job counts against
(``shared.apikeys``). At most ``FAIR_SHARE_DEPTH`` (default 1) of a tenant's jobs
wait in a lane's queue at once; the tenant's other jobs are held back, in order,
in a Redis list of their own. Each time one of its admitted jobs leaves the queue
(a worker takes it, an external worker claims it, or it ends, say cancelled), the
tenant's next held job is let in, at the back. A lane's queue so holds at most
one waiting job per busy tenant, and workers take from it in order: a new job of
another tenant starts after at most one job per busy tenant ahead of it, while a
tenant alone still keeps every worker busy (work-conserving).

Why not RQ's own mechanisms (RQ 3.0): its concurrency limits (``rate_limit_key``)
bound *running* jobs per key, so one tenant alone would get one worker however
many are idle; its round-robin dequeue strategy rotates between queues a worker
was started with, and tenants come and go. Holding back is two short Lua scripts
(``shared/lua/fair_admit.lua``, ``fair_release.lua``) over a set, a list and a hash
per lane and tenant, O(1) per job; ``make bench`` measures the victim's wait.

This module only keeps the places; :class:`shared.lifecycle.Lifecycle` puts the
admitted jobs on their queue (an RQ job held back is saved in RQ, not enqueued).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from shared import keys, scripts
from shared.protocol import QUEUED

RQ_LANE = "rq:"
EXTERNAL_LANE = "ext:"
RELEASE_LOOK = 1000  # held ids a release looks at, at most (the rest: admit refills)


def rq_lane(queue_name: str) -> str:
    """The lane of an RQ queue."""
    return RQ_LANE + queue_name


def external_lane(kind: str) -> str:
    """The lane of an external kind's queue."""
    return EXTERNAL_LANE + kind


def slot_of(lane: str, tenant: str) -> str:
    """``<lane>|<tenant>``: names a lane and tenant's keys (a lane has no ``|``)."""
    return f"{lane}|{tenant}"


@dataclass(frozen=True)
class Admitted:
    """Ids to put on a lane's queue now: held ones first, then new ones."""

    lane: str
    from_held: list[str]
    new: list[str]


class FairShare:
    """The lanes' places on ``client`` (``decode_responses=True``)."""

    def __init__(self, client: redis.Redis, depth: int = 1, ttl: int = 7 * 24 * 3600) -> None:
        self.client = client
        self.depth = depth
        self.ttl = ttl
        self._admit = scripts.register(client, "fair_admit")
        self._release = scripts.register(client, "fair_release")

    def admit(self, lane: str, tenant: str, job_ids: list[str]) -> Admitted:
        """Record ``job_ids`` (stored, queued, in order) for ``tenant`` in ``lane``; those
        to queue now (the rest are held). With no ids it only refills free places."""
        slot = slot_of(lane, tenant)
        raw: list[Any] = scripts.run(
            self._admit, [keys.FAIR_PREFIX + "admitted:" + slot, keys.FAIR_PREFIX + "held:" + slot,
                          keys.FAIR_SLOTS],
            {"ids": job_ids, "slot": slot, "depth": self.depth, "ttl": self.ttl,
             "job_prefix": keys.JOB_KEY_PREFIX, "queued": QUEUED})
        return Admitted(lane, [str(i) for i in raw[0] or []], [str(i) for i in raw[1] or []])

    def release(self, job_id: str) -> Admitted | None:
        """``job_id`` left its queue: the held jobs that take its place (None: it held
        none)."""
        raw: list[Any] = scripts.run(
            self._release, [keys.FAIR_SLOTS],
            {"id": job_id, "prefix": keys.FAIR_PREFIX, "depth": self.depth,
             "job_prefix": keys.JOB_KEY_PREFIX, "queued": QUEUED, "limit": RELEASE_LOOK})
        slot, ids, more = str(raw[0] or ""), [str(i) for i in raw[1] or []], int(raw[2] or 0)
        if not slot:
            return None
        lane, _, tenant = slot.partition("|")
        if more and not ids:  # every id looked at had ended: refill past them
            return self.admit(lane, tenant, [])
        return Admitted(lane, ids, [])

    def held(self, lane: str, tenant: str) -> int:
        """How many of ``tenant``'s jobs ``lane`` holds back (ended ones included)."""
        return int(self.client.llen(keys.FAIR_PREFIX + "held:" + slot_of(lane, tenant)))  # type: ignore[arg-type]
