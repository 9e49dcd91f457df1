"""Starting external jobs, and pushing the states that claims and sweeps change."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Collection, Iterable
from typing import Any

import redis
from flask import current_app

from shared.events import created_events, state_events
from shared.external import ExternalQueues
from shared.kinds import JobKind
from shared.protocol import FAILED, new_id
from shared.store import JobState
from website.extensions import redis_ext, socketio
from website.realtime.sockets import emit_events

log = logging.getLogger(__name__)
EXTENSION = "jobcast.external"
NOTIFIER = "jobcast.external.notifier"
SWEEPING = "jobcast.external.sweeping"  # a threading.Lock: one sweep at a time


def queues() -> ExternalQueues:
    """The current app's external queues."""
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


def start_external(kind: JobKind, args: dict[str, Any],
                   fields: dict[str, str] | None = None, owner: str = "") -> JobState:
    """Store a job of the external ``kind`` as queued and put it on the kind's queue
    (``owner`` indexed for the operators' filters)."""
    job_id = new_id()
    state = redis_ext.store.create(job_id, kind=kind.name, owner=owner, external="1", attempt="1",
                                   args=json.dumps(args, ensure_ascii=False), **(fields or {}))
    try:
        queues().push(job_id, kind.name)
    except redis.RedisError:
        try:  # never leave a "queued" job that no worker will ever see
            redis_ext.store.finish(job_id, FAILED, "The job could not be queued; try again.")
        except redis.RedisError as exc:
            log.warning("job %s: could not record the queueing failure: %s", job_id, exc)
        raise
    log.info("job %s queued for external workers (%s)", job_id, kind.name)
    emit_events(created_events(state, state.created_at))
    return state


def requeue_external(state: JobState) -> None:
    """Put a job of an external kind that was reset to queued (a retry) back on its queue."""
    queues().push(state.job_id, state.kind)


def push_state(state: JobState, at: float) -> None:
    """:func:`website.realtime.sockets.publish_state`, skipping the events for rooms
    that nobody in this process watches when there is no message queue (another
    process then cannot have watchers of its own for them): the same pushes for
    less work (each skipped event would be encoded for nobody)."""
    manager = socketio.server.manager
    local = not current_app.config["SOCKETIO_MESSAGE_QUEUE"]
    for event, payload, room in state_events(state, redis_ext.snippets, at):
        if local and next(manager.get_participants("/", room), None) is None:
            continue
        socketio.emit(event, payload, to=room)


def publish_ids(job_ids: Iterable[str], completed: Collection[str] = ()) -> int:
    """Push the stored state of each job to its watchers, and its batch's totals (the
    ids in ``completed`` ended their batch: its ``onComplete`` starts); how many."""
    from website.jobs import batches

    now, pushed, ids = time.time(), 0, list(job_ids)
    for job_id, state in zip(ids, redis_ext.store.get_many(ids), strict=True):
        if state is not None:
            if job_id in completed:
                state.extra["batch_done"] = "1"
            push_state(state, now)
            batches.after_change(state)
            pushed += 1
    return pushed


def sweep() -> int:
    """Requeue or fail the jobs whose lease lapsed, and push their new state; how many.

    One sweep at a time per process: a request that finds one running goes on at
    once (0) instead of sweeping beside it. When thousands of leases lapse
    together (a fleet of workers gone), every waiting claim and heartbeat would
    otherwise sweep and push at the same moment.
    """
    sweeping: threading.Lock = current_app.extensions[SWEEPING]
    if not sweeping.acquire(blocking=False):
        return 0
    try:
        return _sweep()
    finally:
        sweeping.release()


def _sweep() -> int:
    from website.jobs.webhooks import job_ended

    swept = queues().sweep()
    for job_id in swept.failed:
        job_ended(job_id)
    for job_id in swept.requeued:
        log.info("job %s: lease lapsed, queued again", job_id)
    for job_id in swept.failed:
        log.info("job %s: lease lapsed on its last attempt, failed", job_id)
    return publish_ids(swept.changed, swept.batch_done)
