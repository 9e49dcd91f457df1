"""Queues of external kinds: jobs that workers in any language claim over HTTP.

A job of an external kind (``shared.kinds.external_kind``) is stored like any
job, then its id waits in a Redis list per kind until a worker claims it
(``POST /api/workers/claim``). A claim pops the oldest id and gives the job a
lease of ``LEASE_SECONDS`` in one Lua script, so a job goes to exactly one
worker. Every accepted report and every heartbeat renews the lease; a sweep
puts jobs whose lease lapsed back at the head of their queue (attempt + 1) or,
after ``MAX_ATTEMPTS``, fails them. The scripts are in ``shared/lua``.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

import redis

from shared import keys, scripts
from shared.kinds.policy import DEFAULT_PRIORITY
from shared.priority import claim_keys, external_queue_key
from shared.protocol import FAILED, QUEUED, RUNNING
from shared.store import RETRY_FIELDS, TERMINAL_SET, TRANSITION_FIELDS, JobState

SWEEP_BATCH = 500  # lapsed leases handled per sweep run


@dataclass(frozen=True)
class Claim:
    """A job given to a worker."""

    job_id: str
    kind: str
    args: dict[str, Any]
    attempt: int
    state: JobState  # as stored right after the claim: what to push


class LeasesLapsed:
    """A claim's answer when a lease lapsed: sweep first, then claim again."""


LEASES_LAPSED = LeasesLapsed()


@dataclass(frozen=True)
class Renewal:
    """The answer to a lease renewal: ``held`` False when another attempt holds the job
    (or its lease was revoked); ``external`` False for a job RQ runs (no lease: nothing
    was renewed); ``cancel_requested`` when the job was asked to stop."""

    job_id: str
    state: str
    attempt: int
    held: bool
    external: bool = True
    cancel_requested: bool = False
    worker: str = ""  # the name the job was claimed with


@dataclass(frozen=True)
class Sweep:
    """What a sweep changed."""

    requeued: tuple[str, ...]
    failed: tuple[str, ...]
    batch_done: tuple[str, ...] = ()  # failures that completed their batch
    retried: tuple[str, ...] = ()  # scheduled for their next attempt (their kind retries)

    @property
    def changed(self) -> tuple[str, ...]:
        """Every job whose state the sweep changed."""
        return self.requeued + self.failed + self.retried


class ExternalQueues:
    """The external kinds' queues and leases on ``client`` (``decode_responses=True``)."""

    def __init__(self, client: redis.Redis, lease_seconds: int = 30,
                 max_attempts: int = 3) -> None:
        self.client = client
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self._claim = scripts.register(client, "claim_external")
        self._sweep = scripts.register(client, "sweep_leases")
        self._renew = scripts.register(client, "renew_lease")

    def push(self, job_id: str, kind: str, priority: str = DEFAULT_PRIORITY) -> None:
        """Queue a stored job for its kind (and priority) and wake the waiting claims."""
        pipe = self.client.pipeline()
        pipe.rpush(external_queue_key(kind, priority), job_id)
        pipe.publish(keys.EXTERNAL_CHANNEL, kind)
        pipe.execute()

    def push_many(self, job_ids: list[str], kind: str,
                  priority: str = DEFAULT_PRIORITY) -> None:
        """Queue many stored jobs of one kind and priority (a batch), with one wake-up
        message each."""
        for start in range(0, len(job_ids), 1000):
            chunk = job_ids[start:start + 1000]
            pipe = self.client.pipeline()
            pipe.rpush(external_queue_key(kind, priority), *chunk)
            for _ in chunk:
                pipe.publish(keys.EXTERNAL_CHANNEL, kind)
            pipe.execute()

    def claim(self, kinds: list[str], worker: str, now: float | None = None,
              check_leases: bool = True) -> Claim | LeasesLapsed | None:
        """Take the oldest waiting job of ``kinds`` (in that order; every kind's high
        priority jobs first, then normal, then low: ``shared/priority.py``) for
        ``worker``, or None.

        With ``check_leases`` it takes nothing when the earliest lease deadline has
        passed and answers :data:`LEASES_LAPSED` instead: sweep, then claim again.
        """
        stamp = time.time() if now is None else now
        result = scripts.pairs(scripts.run(
            self._claim, [keys.EXTERNAL_LEASES, *claim_keys(kinds)],
            {"now": repr(stamp), "lease": self.lease_seconds, "worker": worker,
             "job_prefix": keys.JOB_KEY_PREFIX, "queued": QUEUED, "running": RUNNING,
             "check_leases": check_leases, **TRANSITION_FIELDS}))
        code = int(result["code"])
        if code == 2:
            return LEASES_LAPSED
        if code != 1:
            return None
        try:
            args = json.loads(result["args"])
        except ValueError:
            args = {}
        job_id = str(result["jobId"])
        flat = result.get("job") or []
        stored = {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat) - 1, 2)}
        return Claim(job_id=job_id, kind=str(result["kind"]),
                     args=args if isinstance(args, dict) else {},
                     attempt=int(result["attempt"]), state=JobState.from_hash(job_id, stored))

    def renew_many(self, jobs: list[tuple[str, int | None]],
                   now: float | None = None) -> list[Renewal | None]:
        """Extend the lease of each ``(job_id, attempt)`` held by that attempt (any when
        None), in order, in one round trip.

        None for an unknown job; ``held`` False when another attempt holds it. A
        job that has ended loses its lease.
        """
        stamp = time.time() if now is None else now
        calls = [self._renew_call(job_id, attempt, stamp) for job_id, attempt in jobs]
        answers = scripts.run_each(self.client, self._renew, calls)
        renewals: list[Renewal | None] = []
        for (job_id, _attempt), answer in zip(jobs, answers, strict=True):
            if isinstance(answer, redis.RedisError):
                raise answer
            renewals.append(self._renewal(job_id, answer))
        return renewals

    @staticmethod
    def _renewal(job_id: str, raw: list[Any]) -> Renewal | None:
        result = scripts.pairs(raw)
        code = int(result["code"])
        if code < 0:
            return None
        return Renewal(job_id=job_id, state=str(result["state"]),
                       attempt=int(result["attempt"]), held=code != 0, external=code != 2,
                       cancel_requested=bool(int(result.get("cancel") or 0)),
                       worker=str(result.get("worker") or ""))

    def _renew_call(self, job_id: str, attempt: int | None,
                    now: float) -> tuple[list[str], dict[str, Any]]:
        fields: dict[str, Any] = {"id": job_id, "deadline": repr(now + self.lease_seconds),
                                  "terminal": TERMINAL_SET}
        if attempt is not None:
            fields["attempt"] = str(attempt)
        return [keys.EXTERNAL_LEASES, keys.job_key(job_id)], fields

    def sweep(self, now: float | None = None) -> Sweep:
        """Requeue (or fail, on their last attempt) the jobs whose lease lapsed; a job
        whose kind retries is scheduled for its next attempt instead (its backoff)."""
        stamp = time.time() if now is None else now
        result = scripts.pairs(scripts.run(self._sweep, [keys.EXTERNAL_LEASES], {
            "now": repr(stamp), "max_attempts": self.max_attempts,
            "job_prefix": keys.JOB_KEY_PREFIX, "queue_prefix": keys.EXTERNAL_QUEUE_PREFIX,
            "queued": QUEUED, "failed": FAILED, "limit": SWEEP_BATCH,
            "jitter": random.random(), **RETRY_FIELDS, **TRANSITION_FIELDS}))
        requeued = tuple(str(i) for i in result.get("requeued") or [])
        if requeued:  # wake a waiting claim of each kind (it passes the wake-up on)
            pipe = self.client.pipeline(transaction=False)
            for kind in dict.fromkeys(str(k) for k in result.get("kinds") or []):
                pipe.publish(keys.EXTERNAL_CHANNEL, kind)
            pipe.execute()
        return Sweep(requeued=requeued, failed=tuple(str(i) for i in result.get("gave_up") or []),
                     batch_done=tuple(str(i) for i in result.get("batch_done") or []),
                     retried=tuple(str(i) for i in result.get("retried") or []))
