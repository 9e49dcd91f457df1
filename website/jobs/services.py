"""Operations the views share: creating and enqueuing jobs."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from functools import partial
from typing import Any

import redis
from flask import current_app

from shared.events import created_events
from shared.kinds import JobKind
from shared.kinds.validate import with_defaults
from shared.protocol import DEMO_KIND, FAILED, QUEUED, RUN_KIND_JOB, SCHEDULED, new_id
from shared.signing import sign_job_token
from shared.store import JobState
from website.extensions import redis_ext
from website.http.ownership import request_owner
from website.http.storage import ensure_room
from website.realtime.sockets import emit_events

log = logging.getLogger(__name__)
KINDS_EXTENSION = "jobcast.kinds"
HIDDEN_KINDS_EXTENSION = "jobcast.kinds.hidden"  # started by the site only (bulk actions)


def enqueue_job(function: str, kind: str, job_id: str | None = None, *,
                timeout: int | None = None, fields: dict[str, str] | None = None,
                owner: str | None = None, run_at: datetime | None = None,
                at_front: bool = False, **kwargs: Any) -> JobState:
    """Store a new job as ``queued``, then enqueue ``function`` by dotted name.

    The job function receives ``job_id`` and a per-job callback ``token``;
    the RQ job id is the same UUID, so RQ and the site name the job alike.
    String ``kwargs`` are also stored on the job's hash (e.g. ``snippet_id``,
    so the callback knows which snippet a highlight job is for), and so are
    ``fields``. ``timeout`` overrides ``JOB_TIMEOUT``. ``owner`` (who started
    the job; None: the requesting session's owner id, '' outside a request) is
    stored and indexed for the operators' filters.
    With ``run_at`` (UTC) the job is ``scheduled`` and RQ's scheduler queues it then.
    """
    cfg = current_app.config
    job_id = job_id or new_id()
    stored = {k: v for k, v in kwargs.items() if isinstance(v, str)}
    extra = {**stored, **(fields or {})}
    if run_at is not None:
        extra["run_at"] = repr(run_at.timestamp())
    owner = request_owner() if owner is None else owner
    state = redis_ext.store.create(job_id, kind, owner,
                                   SCHEDULED if run_at is not None else QUEUED, **extra)
    queue = redis_ext.queue
    try:
        (partial(queue.enqueue_at, run_at) if run_at is not None else queue.enqueue)(
            function,
            job_id,
            token=sign_job_token(cfg["SECRET_KEY"], job_id),
            **kwargs,
            job_id=job_id,
            job_timeout=timeout or cfg["JOB_TIMEOUT"],
            result_ttl=cfg["JOB_TTL"],
            failure_ttl=cfg["JOB_TTL"],
            **({"at_front": True} if at_front else {}),
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


def kinds() -> dict[str, JobKind]:
    """The job kinds this site offers (``JOB_KINDS``), by name."""
    return current_app.extensions[KINDS_EXTENSION]  # type: ignore[no-any-return]


def hidden_kind(name: str) -> JobKind:
    """A kind the site starts itself (``hidden=True``), by name."""
    return current_app.extensions[HIDDEN_KINDS_EXTENSION][name]  # type: ignore[no-any-return]


def start_kind(kind: JobKind, args: dict[str, Any], webhook: str | None = None,
               owner: str | None = None, run_at: datetime | None = None,
               at_front: bool = False) -> JobState:
    """Create and enqueue a job of ``kind`` with checked ``args``.

    The arguments are kept on the job (uploads only by their size), so the
    operators' job page can show them. Jobs of an external kind go to the
    kind's queue in Redis (``website.workers``), not to RQ. ``webhook`` (a
    checked URL) is called when the job ends (``website.jobs.webhooks``).
    ``owner`` is indexed for the operators' filters (None: the requesting
    session's owner id, see ``website.http.ownership``); ``run_at`` schedules it;
    ``at_front`` puts it first in the queue (bulk actions).
    """
    hook = {"webhook": webhook, "webhook_state": "pending"} if webhook else {}
    ensure_room()
    if kind.external:  # claimed over HTTP by a worker in any language, never by RQ
        from website.workers.queues import start_external

        return start_external(kind, args, hook,
                              owner=request_owner() if owner is None else owner)
    shown = {name: (f"<upload, {len(value)} characters>" if name in kind.uploads
                    and isinstance(value, str) else value) for name, value in args.items()}
    return enqueue_job(RUN_KIND_JOB, kind=kind.name, timeout=kind.timeout,
                       fields={"args": json.dumps(shown, ensure_ascii=False), **hook},
                       owner=owner, run_at=run_at, at_front=at_front,
                       kind_name=kind.name, kind_args=args)


def start_demo_job() -> JobState:
    """Create and enqueue one demo job (its default arguments; 503 when the store is full)."""
    demo = kinds()[DEMO_KIND]
    return start_kind(demo, with_defaults(demo, {}))
