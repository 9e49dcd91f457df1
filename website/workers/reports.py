"""Progress reports, one or a batch: who may send each, and what each did.

``POST /api/progress`` takes one report (a JSON object) or a batch (a JSON
array of up to ``BATCH_MAX`` reports). Who may do this, per report: the shared
``PROGRESS_TOKEN`` or ``WORKER_TOKEN``, or the job's own per-job token. A
per-job token names an attempt: once that attempt was superseded (a retry, or
an external job's lapsed lease), its reports are refused with 409 (checked in
the same Lua script that applies them); an accepted report for an external job
renews its lease.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask import current_app

from shared.protocol import PayloadError, PayloadTooLarge, ProgressUpdate
from shared.signing import ANY_ATTEMPT, JobGrant, authorise_report, same_text
from shared.store import StaleAttempt, UnknownJob
from website.extensions import redis_ext
from website.http.access import request_started
from website.jobs import batches
from website.jobs.services import KINDS_EXTENSION
from website.jobs.webhooks import job_ended
from website.ops.monitoring import observe_emit
from website.realtime.sockets import publish_state
from website.workers.queues import queues

BATCH_MAX = 100


@dataclass(frozen=True)
class Outcome:
    """What became of one report: an HTTP ``status`` and, when known, the job's state."""

    job_id: str | None
    status: int
    message: str = ""
    applied: bool = False
    state: str | None = None

    def to_json(self) -> dict[str, object]:
        """One item of a batch's answer."""
        body: dict[str, object] = {"jobId": self.job_id, "status": self.status,
                                   "applied": self.applied, "state": self.state}
        if self.message:
            body["error"] = self.message
        return body


def grant_for(token: str, job_id: object) -> JobGrant | None:
    """What ``token`` may do for ``job_id``: any attempt (the shared ``PROGRESS_TOKEN``
    or ``WORKER_TOKEN``), one attempt (its per-job token), or nothing (None)."""
    cfg = current_app.config
    target = job_id if isinstance(job_id, str) else ""
    if cfg["WORKER_TOKEN"] and same_text(token, cfg["WORKER_TOKEN"]):
        return JobGrant(target, ANY_ATTEMPT)
    return authorise_report(cfg["PROGRESS_TOKEN"], cfg["SECRET_KEY"], token, target,
                            max_age=cfg["JOB_TOKEN_MAX_AGE"])


def token_allows(token: str, job_id: object) -> bool:
    """Whether ``token`` may report for ``job_id`` at all."""
    return grant_for(token, job_id) is not None


def _is_external(kind: str) -> bool:
    declared = current_app.extensions[KINDS_EXTENSION].get(kind)
    return declared is not None and bool(declared.external)


def apply_report(body: object, token: str) -> Outcome:
    """Check, authorise and apply one report; push an applied change to its watchers."""
    job_id = body.get("jobId") if isinstance(body, dict) else None
    shown = job_id if isinstance(job_id, str) else None
    grant = grant_for(token, job_id)
    if grant is None:
        return Outcome(shown, 401, "invalid token")
    now = time.time()
    try:
        update = ProgressUpdate.from_json(body, now=now)
        # A dropped update still learns the job's state: the worker stops once it ended.
        applied, state = redis_ext.store.apply_or_state(update, now=now, attempt=grant.attempt)
    except PayloadTooLarge as exc:
        return Outcome(shown, 413, str(exc))
    except PayloadError as exc:
        return Outcome(shown, 400, str(exc))
    except UnknownJob:
        return Outcome(shown, 404, "unknown job id")
    except StaleAttempt as exc:
        return Outcome(shown, 409, f"this token is for an earlier attempt; the job is on "
                                   f"attempt {exc.attempt}")
    # Any accepted report keeps an external job's lease (an ended job loses it). An
    # applied update names its kind, so jobs RQ runs skip that second script; a
    # dropped one does not, and renews (a lease of a job RQ runs is left alone).
    if applied is None or _is_external(applied.kind):
        queues().renew(update.job_id, grant.attempt or None, now)
    if applied is not None:
        publish_state(applied, now)
        batches.after_change(applied)
        observe_emit(request_started())
        if applied.finished:
            job_ended(update.job_id)
    return Outcome(update.job_id, 204, applied=applied is not None, state=state)
