"""Operations the views share: creating and enqueuing jobs."""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app

from shared.protocol import DEMO_JOB, HIGHLIGHT_JOB, HIGHLIGHT_KIND, new_id
from shared.signing import sign_job_token
from shared.snippets import Snippet
from shared.store import JobState
from website import dashboard
from website.extensions import redis_ext

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


def start_highlight(source: str, language: str) -> tuple[Snippet, JobState]:
    """Store a (validated) snippet, then enqueue its highlight job."""
    job_id = new_id()
    snippet = redis_ext.snippets.create(source, language, job_id)
    state = enqueue_job(HIGHLIGHT_JOB, kind=HIGHLIGHT_KIND, job_id=job_id,
                        snippet_id=snippet.snippet_id)
    return snippet, state
