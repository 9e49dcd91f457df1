"""Operations the views share: creating and enqueuing jobs."""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app

from shared.protocol import DEMO_JOB, new_id
from shared.signing import sign_job_token
from shared.store import JobState
from website import dashboard
from website.extensions import redis_ext

log = logging.getLogger(__name__)


def enqueue_job(function: str, kind: str, job_id: str | None = None,
                **kwargs: Any) -> JobState:
    """Store a new job as ``queued``, then enqueue ``function`` by dotted name.

    The job function receives ``job_id`` and a per-job callback ``token``;
    the RQ job id is the same UUID, so RQ and the site name the job alike.
    """
    cfg = current_app.config
    job_id = job_id or new_id()
    state = redis_ext.store.create(job_id, kind=kind)
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
    log.info("job %s enqueued (%s)", job_id, function)
    dashboard.notify(state, state.created_at, created=True)
    return state


def start_demo_job() -> JobState:
    """Create and enqueue one demo job."""
    return enqueue_job(DEMO_JOB, kind="demo")
