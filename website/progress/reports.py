"""Progress reports, one or a batch: who may send each, and what each did.

``POST /api/progress`` takes one report (a JSON object) or a batch (a JSON
array of up to ``BATCH_MAX`` reports). Who may do this, per report: the shared
``PROGRESS_TOKEN`` (any job), ``WORKER_TOKEN`` (jobs of external kinds only: any
other job answers 404, as an unknown one does), or the job's own per-job token.
A per-job token names an attempt: once that attempt was superseded (a retry, or
an external job's lapsed lease), its reports are refused with 409 (checked in
the same Lua script that applies them); an accepted report for an external job
renews its lease in that same script run. The shared tokens' reports order by
their own ``seq``, apart from the attempt's (``shared/lua/update_job.lua``), so
a shared-token report cannot silence the worker that holds the job.

Each report goes through the app's lifecycle (``Lifecycle.report``), which
stores it and pushes what changed. A batch (:func:`apply_batch`) gives each
report the answer it would have had alone, and pushes each applied change as
if it had come alone, but checks the token once and applies all reports in one
round trip (``Lifecycle.report_many``, each report still atomic). Single reports
that arrive together share a round trip too (``shared/coalesce.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, jsonify

from shared.errors import JobcastError
from shared.jobstate import UnknownJob
from shared.protocol import PayloadError, ProgressUpdate
from shared.signing import (
    ANY_ATTEMPT,
    ANY_EXTERNAL_ATTEMPT,
    JobGrant,
    read_job_token,
    same_text,
)
from website.extensions import core
from website.http.access import request_started
from website.http.answers import error_response, status_of
from website.ops.monitoring import observe_emit

BATCH_MAX = 100
EXTERNAL_ONLY = "unknown job id (WORKER_TOKEN reports only for jobs of external kinds)"


@dataclass(frozen=True)
class Outcome:
    """What became of one report: an HTTP ``status`` and, when known, the job's state."""

    job_id: str | None
    status: int
    message: str = ""
    applied: bool = False
    state: str | None = None
    cancel_requested: bool = False  # the job was asked to stop: the worker should

    def to_json(self) -> dict[str, object]:
        """One item of a batch's answer."""
        body: dict[str, object] = {"jobId": self.job_id, "status": self.status,
                                   "applied": self.applied, "state": self.state}
        if self.message:
            body["error"] = self.message
        if self.cancel_requested:
            body["cancelRequested"] = True
        return body


def token_allows(token: str, job_id: object) -> bool:
    """Whether ``token`` may report for ``job_id`` at all."""
    return TokenCheck.of(token).grant(job_id) is not None


def apply_report(body: object, token: str) -> Outcome:
    """Check, authorise and apply one report; push an applied change to its watchers."""
    job_id = body.get("jobId") if isinstance(body, dict) else None
    shown = job_id if isinstance(job_id, str) else None
    grant = TokenCheck.of(token).grant(job_id)
    if grant is None:
        return Outcome(shown, 401, "invalid token")
    now = time.time()
    try:
        update = ProgressUpdate.from_json(body, now=now)
        # A dropped update still learns the job's state: the worker stops once it ended.
        applied, state, cancel = core.lifecycle.report(update, grant.attempt, now)
    except JobcastError as exc:  # a bad payload, an unknown job, a superseded attempt
        return Outcome(shown, status_of(exc), _message(exc, grant))
    return Outcome(update.job_id, 204, applied=applied is not None, state=state,
                   cancel_requested=cancel)


def _message(exc: JobcastError, grant: JobGrant) -> str:
    """The error a report answers; a WORKER_TOKEN report for no external job says why."""
    if isinstance(exc, UnknownJob) and grant.attempt == ANY_EXTERNAL_ATTEMPT:
        return EXTERNAL_ONLY
    return exc.message


@dataclass(frozen=True)
class TokenCheck:
    """A bearer token, checked once (a batch's reports share it): reports for any job
    (``PROGRESS_TOKEN``: ``shared`` is ANY_ATTEMPT), for any job of an external kind
    (``WORKER_TOKEN``: ANY_EXTERNAL_ATTEMPT, which the store script checks), for the
    one job (and attempt) of a per-job token, or for none."""

    shared: int | None
    signed: JobGrant | None

    @classmethod
    def of(cls, token: str) -> TokenCheck:
        """Check ``token`` against the shared tokens, else as a per-job token."""
        cfg = current_app.config
        for shared, scope in ((cfg["PROGRESS_TOKEN"], ANY_ATTEMPT),
                              (cfg["WORKER_TOKEN"], ANY_EXTERNAL_ATTEMPT)):
            if shared and same_text(token, shared):
                return cls(scope, None)
        return cls(None, read_job_token(cfg["SECRET_KEY"], token, cfg["JOB_TOKEN_MAX_AGE"]))

    def grant(self, job_id: object) -> JobGrant | None:
        """What the token may do for ``job_id`` (None: nothing)."""
        target = job_id if isinstance(job_id, str) else ""
        if self.shared is not None:
            return JobGrant(target, self.shared)
        if self.signed is not None and same_text(self.signed.job_id, target):
            return self.signed
        return None


@dataclass(frozen=True)
class _Checked:
    index: int
    shown: str | None
    update: ProgressUpdate
    attempt: int


def apply_batch(items: list[Any], token: str) -> list[Outcome]:
    """:func:`apply_report` for each of ``items``: the same answers and pushes, in
    order, for one Redis round trip (a pipeline of update scripts) and one token
    check."""
    check = TokenCheck.of(token)
    now = time.time()
    outcomes: list[Outcome | None] = [None] * len(items)
    checked: list[_Checked] = []
    for index, body in enumerate(items):
        job_id = body.get("jobId") if isinstance(body, dict) else None
        shown = job_id if isinstance(job_id, str) else None
        grant = check.grant(job_id)
        if grant is None:
            outcomes[index] = Outcome(shown, 401, "invalid token")
            continue
        try:
            update = ProgressUpdate.from_json(body, now=now)
        except PayloadError as exc:
            outcomes[index] = Outcome(shown, status_of(exc), exc.message)
            continue
        checked.append(_Checked(index, shown, update, grant.attempt))
    answers = core.lifecycle.report_many([(c.update, c.attempt) for c in checked], now=now)
    for item, answer in zip(checked, answers, strict=True):
        if isinstance(answer, JobcastError):
            outcomes[item.index] = Outcome(item.shown, status_of(answer),
                                           _message(answer, JobGrant("", item.attempt)))
        else:
            applied, name, cancel = answer
            outcomes[item.index] = Outcome(item.update.job_id, 204, applied=applied is not None,
                                           state=name, cancel_requested=cancel)
    return [outcome for outcome in outcomes if outcome is not None]


def answer_batch(items: list[object], token: str) -> Response | tuple[Response | str, int]:
    """The answer to a batch of reports: 200 with one result per report (401 when the
    token allows none of them, 400 for a batch that is not 1 to ``BATCH_MAX`` objects)."""
    if not 1 <= len(items) <= BATCH_MAX:
        return error_response(400, f"a batch holds 1 to {BATCH_MAX} reports")
    if not all(isinstance(item, dict) for item in items):
        return error_response(400, "each report of a batch must be a JSON object")
    outcomes = apply_batch(items, token)
    if all(outcome.status == 401 for outcome in outcomes):
        return error_response(401, "invalid token")
    started = request_started()
    for outcome in outcomes:
        if outcome.applied:
            observe_emit(started)
    return jsonify({"results": [outcome.to_json() for outcome in outcomes]})
