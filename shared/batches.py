"""Batches: many jobs of one kind started together, with totals kept atomically.

A batch is a hash (``shared.keys.batch_key``): its kind, ``total``, ``done``,
a count per state, and its tenant (with the address that pays for a session's,
``shared/quotas.py``). Its children are ordinary jobs with a ``batch_id``
field, listed in ``shared.keys.batch_index``. Each child's change moves the
totals in the same Lua script that changes the child, and the one change that
makes the last child final is told so (``JobState.extra["batch_done"]``),
exactly once: the lifecycle then starts the batch's ``onComplete`` job
(``shared/lifecycle/reactions.py``). :func:`totals_event` is the push of the totals that
a child's change makes, throttled.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

from shared import keys
from shared.errors import NotFound
from shared.protocol import BATCH_PROGRESS, QUEUED, STATES, batch_room, new_id
from shared.store import JobState, JobStore

log = logging.getLogger(__name__)
BATCH_MAX = 10_000
# batchProgress: at most one throttled push per 112 ms per batch (9 in any second) plus the
# one of the completing change, so never more than 10 in any 1 s window
PUSH_INTERVAL_MS = 112
Event = tuple[str, dict[str, Any], str]


class UnknownBatch(NotFound):
    """No batch with that id (or it expired)."""

    def __init__(self, batch_id: str) -> None:
        super().__init__("unknown batch id")
        self.batch_id = batch_id


def create_batch(store: JobStore, kind: str, items: list[dict[str, Any]], owner: str = "",
                 on_complete: dict[str, Any] | None = None,
                 child_fields: dict[str, str] | None = None, tenant: str = "",
                 address: str = "", ids: list[str] | None = None, initial: str = QUEUED,
                 child_extra: list[dict[str, str]] | None = None) -> tuple[str, list[str]]:
    """Store a batch and its children (in state ``initial``, each recorded with
    ``owner`` and ``child_fields``, and ``child_extra[i]`` for item i; ids ``ids``
    when given); the batch id and the child ids. ``tenant`` and ``address`` are
    kept for its ``onComplete`` (:func:`batch_tenant`)."""
    batch_id = new_id()
    now = time.time()
    ids = ids or [new_id() for _ in items]
    more = child_extra or [{} for _ in items]
    fields: dict[str, str] = {"kind": kind, "owner": owner, "total": str(len(items)), "done": "0",
                              "created_at": repr(now), initial: str(len(items)),
                              "on_complete": json.dumps(on_complete) if on_complete else "",
                              "tenant": tenant, "tenant_address": address}
    client = store.client
    pipe = client.pipeline()
    pipe.hset(keys.batch_key(batch_id), mapping=fields)  # type: ignore[arg-type]
    pipe.expire(keys.batch_key(batch_id), store.ttl)
    pipe.execute()
    for start in range(0, len(items), 1000):
        pipe = client.pipeline(transaction=False)
        for job_id, args, own in zip(ids[start:start + 1000], items[start:start + 1000],
                                     more[start:start + 1000], strict=True):
            extra = {**(child_fields or {}), **own, "batch_id": batch_id, "state": initial,
                     "args": json.dumps(args, ensure_ascii=False)}
            store._create(**store._create_call(job_id, kind, owner, now, extra), client=pipe)
        pipe.execute()
    return batch_id, ids


def batch_totals(client: redis.Redis, batch_id: str) -> dict[str, Any]:
    """``{"batchId", "kind", "total", "done", "counts": {state: n}, "complete"}``."""
    data: dict[str, str] = client.hgetall(keys.batch_key(batch_id))  # type: ignore[assignment]
    if not data:
        raise UnknownBatch(batch_id)
    total, done = int(data.get("total", "0")), int(data.get("done", "0"))
    return {"batchId": batch_id, "kind": data.get("kind", ""), "total": total, "done": done,
            "counts": {state: int(data.get(state, "0") or 0) for state in STATES},
            "complete": bool(data.get("completed_at")),
            "completeJob": data.get("complete_job") or None}


def on_complete(client: redis.Redis, batch_id: str) -> dict[str, Any] | None:
    """The batch's ``onComplete`` (``{"kind", "args"}``), None for none."""
    raw = client.hget(keys.batch_key(batch_id), "on_complete")
    return json.loads(raw) if raw else None  # type: ignore[arg-type]


def batch_tenant(client: redis.Redis, batch_id: str) -> tuple[str, str]:
    """The tenant of the batch and its client's address (``shared/quotas.py``): what its
    ``onComplete`` job inherits ('' for unknown)."""
    found = client.hmget(keys.batch_key(batch_id), ["tenant", "tenant_address"])
    tenant, address = (str(value or "") for value in found)  # type: ignore[union-attr]
    return tenant, address


def batch_owner(client: redis.Redis, batch_id: str) -> str:
    """The owner id of the session that created the batch ('' when unknown)."""
    return str(client.hget(keys.batch_key(batch_id), "owner") or "")


def totals_event(client: redis.Redis, batch_id: str, child: JobState) -> Event | None:
    """The ``batchProgress`` push a change of ``child`` makes: at most one per
    ``PUSH_INTERVAL_MS`` per batch (a Redis token shared by every process), and always
    for the change that ended the last child; None when it is not due (or the batch
    is gone)."""
    tick = f"{keys.VOLATILE_PREFIX}:batch-push:{batch_id}"
    try:
        final = child.extra.get("batch_done") == "1" or (
            child.finished and ended_all(client, batch_id))
        if final or client.set(tick, "1", nx=True, px=PUSH_INTERVAL_MS):
            return BATCH_PROGRESS, batch_totals(client, batch_id), batch_room(batch_id)
    except (UnknownBatch, redis.RedisError) as exc:
        log.warning("batch %s: totals not pushed: %s", batch_id, exc)
    return None


def ended_all(client: redis.Redis, batch_id: str) -> bool:
    """True when every child of the batch has ended (its totals say so)."""
    found = client.hmget(keys.batch_key(batch_id), ["total", "done"])
    total, done = (int(v or 0) for v in found)  # type: ignore[union-attr]
    return total > 0 and done >= total


def complete(client: redis.Redis, batch_id: str, job_id: str) -> None:
    """Note the job its ``onComplete`` started."""
    client.hset(keys.batch_key(batch_id), "complete_job", job_id)


def claim_cancel(client: redis.Redis, batch_id: str, job_id: str) -> str:
    """Record ``job_id`` as the batch's cancelling bulk job unless one is recorded; the
    recorded one (``job_id`` when this call recorded it)."""
    key = keys.batch_key(batch_id)
    if client.hsetnx(key, "cancel_job", job_id):
        return job_id
    return cancel_job(client, batch_id)


def cancel_job(client: redis.Redis, batch_id: str) -> str:
    """The id of the batch's cancelling bulk job ('' for none)."""
    return str(client.hget(keys.batch_key(batch_id), "cancel_job") or "")


def replace_cancel(client: redis.Redis, batch_id: str, old: str, new: str) -> bool:
    """Record ``new`` in place of an ended ``old`` cancelling job, unless another call
    did first (False)."""
    key = keys.batch_key(batch_id)
    with client.pipeline() as pipe:
        try:
            pipe.watch(key)
            if pipe.hget(key, "cancel_job") != old:
                return False
            pipe.multi()
            pipe.hset(key, "cancel_job", new)
            pipe.execute()
        except redis.WatchError:
            return False
    return True
