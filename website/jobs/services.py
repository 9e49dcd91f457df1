"""Operations the views share: creating and enqueuing jobs."""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import current_app

from shared.events import created_events
from shared.protocol import DEMO_JOB, FAILED, new_id
from shared.signing import sign_job_token
from shared.store import JobState
from website.extensions import redis_ext
from website.http.storage import ensure_room
from website.realtime.sockets import emit_events

log = logging.getLogger(__name__)


def enqueue_job(function: str, kind: str, job_id: str | None = None,
                **kwargs: Any) -> JobState:
    """Store a new job as ``queued``, then enqueue ``function`` by dotted name.

    The job function receives ``job_id`` and a per-job callback ``token``;
    the RQ job id is the same UUID, so RQ and the site name the job alike.
    String ``kwargs`` are also stored on the job's hash (e.g. ``snippet_id``,
    so the callback knows which snippet a highlight job is for).
    """
    cfg = current_app.config
    job_id = job_id or new_id()
    fields = {k: v for k, v in kwargs.items() if isinstance(v, str)}
    state = redis_ext.store.create(job_id, kind=kind, **fields)
    try:
        redis_ext.queue.enqueue(
            function,
            job_id,
            token=sign_job_token(cfg["SECRET_KEY"], job_id),
            **kwargs,
            job_id=job_id,
            job_timeout=cfg["JOB_TIMEOUT"],
            result_ttl=cfg["JOB_TTL"],
            failure_ttl=cfg["JOB_TTL"],
        )
    except redis.RedisError:
        # Never leave a "queued" job that no worker will ever see.
        try:
            redis_ext.store.finish(job_id, FAILED, "The job could not be queued; try again.")
        except redis.RedisError as exc:
            log.warning("job %s: could not record the enqueue failure: %s", job_id, exc)
            discard_job(job_id)
        raise
    log.info("job %s enqueued (%s)", job_id, function)
    emit_events(created_events(state, state.created_at))
    return state


def discard_job(job_id: str) -> None:
    """Delete a job that could be neither queued nor failed (deletes work even
    when Redis is at ``maxmemory``)."""
    try:
        redis_ext.store.discard(job_id)
    except redis.RedisError as exc:
        log.warning("job %s: could not discard it either: %s", job_id, exc)


def start_demo_job() -> JobState:
    """Create and enqueue one demo job (503 when the store is full)."""
    ensure_room()
    return enqueue_job(DEMO_JOB, kind="demo")
