"""Start a job of a declared kind from outside the site (the worker's processes).

The site starts jobs with ``website.jobs.services.start_kind``; the tick
process of recurring schedules and the bulk kind (a batch's ``onComplete``
after a bulk cancel) start them with :func:`start_kind_job`, which stores and
enqueues them the same way: ``queued`` with the arguments shown, then
``worker.runner.run_kind`` with the per-job token.
"""

from __future__ import annotations

import json
from typing import Any

from rq import Queue

from shared.protocol import RUN_KIND_JOB, new_id
from shared.signing import sign_job_token
from shared.store import JobState, JobStore


def start_kind_job(cfg: Any, store: JobStore, queue: Queue, kind: str, args: dict[str, Any],
                   owner: str = "") -> JobState:
    """Store and enqueue one job of ``kind`` (arguments already checked); its state.

    Its callback token is signed with ``SECRET_KEY``; without one (a worker that has
    only ``PROGRESS_TOKEN``) the job reports with the shared token instead."""
    job_id = new_id()
    state = store.create(job_id, kind, owner, args=json.dumps(args, ensure_ascii=False))
    # Without SECRET_KEY (a worker may run without it) the job reports with the shared
    # PROGRESS_TOKEN: no token here makes the runner use it.
    token = sign_job_token(cfg.SECRET_KEY, job_id) if cfg.SECRET_KEY else None
    queue.enqueue(RUN_KIND_JOB, job_id, token=token,
                  kind_name=kind, kind_args=args, job_id=job_id, job_timeout=cfg.JOB_TIMEOUT,
                  result_ttl=cfg.JOB_TTL, failure_ttl=cfg.JOB_TTL)
    return state
