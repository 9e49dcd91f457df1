"""Progress reports, one or a batch: who may send each, and what each did.

``POST /api/progress`` takes one report (a JSON object) or a batch (a JSON
array of up to ``BATCH_MAX`` reports). Who may do this, per report: the shared
``PROGRESS_TOKEN`` or ``WORKER_TOKEN``, or the job's own per-job token. A
per-job token that names an attempt (the token of a claim) is refused with 409
when that attempt was superseded (its lease lapsed and the job was queued
again); an accepted report for an external job renews its lease.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from flask import current_app

from shared.protocol import PayloadError, PayloadTooLarge, ProgressUpdate
from shared.signing import job_token_attempt
from shared.store import UnknownJob
from website.extensions import redis_ext
from website.http.access import request_started
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


def _shared_token(token: str) -> bool:
    cfg = current_app.config
    return any(secret and hmac.compare_digest(token.encode(), secret.encode())
               for secret in (cfg["PROGRESS_TOKEN"], cfg["WORKER_TOKEN"]))


def token_allows(token: str, job_id: object) -> tuple[bool, int | None]:
    """Whether ``token`` may report for ``job_id``, and the attempt it names (None: any)."""
    if _shared_token(token):
        return True, None
    if not isinstance(job_id, str):
        return False, None
    attempt = job_token_attempt(current_app.config["SECRET_KEY"], token, job_id)
    return attempt is not None, attempt or None


def apply_report(body: object, token: str) -> Outcome:
    """Check, authorise and apply one report; push an applied change to its watchers."""
    job_id = body.get("jobId") if isinstance(body, dict) else None
    shown = job_id if isinstance(job_id, str) else None
    allowed, attempt = token_allows(token, job_id)
    if not allowed:
        return Outcome(shown, 401, "invalid token")
    now = time.time()
    try:
        update = ProgressUpdate.from_json(body)
        renewal = queues().renew(update.job_id, attempt, now)
        if renewal is None:
            raise UnknownJob(update.job_id)
        if not renewal.held:
            return Outcome(update.job_id, 409, f"attempt {attempt} was superseded by attempt "
                                               f"{renewal.attempt}", state=renewal.state)
        applied, state = redis_ext.store.apply_or_state(update, now=now)
    except PayloadTooLarge as exc:
        return Outcome(shown, 413, str(exc))
    except PayloadError as exc:
        return Outcome(shown, 400, str(exc))
    except UnknownJob:
        return Outcome(shown, 404, "unknown job id")
    if applied is not None:
        publish_state(applied, now)
        observe_emit(request_started())
        if applied.finished:
            queues().renew(update.job_id, attempt, now)  # an ended job loses its lease
            job_ended(update.job_id)
    return Outcome(update.job_id, 204, applied=applied is not None, state=state)
