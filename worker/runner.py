"""Run a declared job kind: ``run_kind`` is what the site enqueues for every kind.

The function of the kind (``shared.kinds``) gets a :class:`JobContext` and the
arguments the site checked against the kind's schema; what it returns is the
job's result (any JSON, at most 64 KB), sent with the final ``succeeded``.
Uploads are not in RQ's job: it names them (``uploads``), and they are read
from where the site stored them (``shared/uploads.py``) when the job starts.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

from shared import tracing
from shared.config import WORKER, Config
from shared.errors import Invalid, NotFound
from shared.kinds import CancelRequested, resolve
from shared.protocol import RESULT_MAX_BYTES
from shared.uploads import UploadStore
from worker.boundary import job_boundary, make_reporter
from worker.context import JobContext
from worker.core import lifecycle

log = logging.getLogger(__name__)


class UnknownKind(NotFound):
    """The job names a kind this worker does not declare (JOB_KINDS differs?)."""


class BadResult(Invalid):
    """The function returned something that cannot be a job's result."""


def checked_result(value: Any) -> Any:
    """``value`` if it can be stored as a result; :class:`BadResult` otherwise."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise BadResult(f"the result is not JSON: {exc}") from exc
    size = len(text.encode("utf-8"))
    if size > RESULT_MAX_BYTES:
        raise BadResult(f"the result is {size} bytes as JSON; at most {RESULT_MAX_BYTES} are kept")
    return value


def run_kind(job_id: str, kind_name: str, kind_args: dict[str, Any],
             token: str | None = None, uploads: list[str] | None = None) -> str:
    """RQ entry point for every declared kind (enqueued as ``RUN_KIND_JOB``); ``uploads``
    names the upload arguments stored apart (:class:`~shared.uploads.UploadStore`).

    With tracing on (``shared/tracing.py``) the run is a span parented by the context
    stored with the job, and its callbacks are that span's children."""
    cfg = Config(role=WORKER)
    core = lifecycle(cfg)
    with tracing.job_run(core.client, job_id, kind_name):
        return _run_kind(cfg, job_id, kind_name, kind_args, token, uploads)


def _run_kind(cfg: Config, job_id: str, kind: str, kind_args: dict[str, Any],
              token: str | None, uploads: list[str] | None) -> str:
    reporter = make_reporter(cfg, token)
    core = lifecycle(cfg)
    try:  # first thing: the tenant's next held job takes this one's place in the queue
        core.left_queue(job_id)
    except redis.RedisError as exc:  # it is given up when this job ends, at the latest
        log.warning("job %s: could not give up its place in the queue: %s", job_id, exc)
    try:  # its kind was paused while it waited in RQ's queue: hand it back, unrun
        if core.held_back(job_id, kind):
            log.info("job %s (%s) held back: its kind is paused", job_id, kind)
            return "held back: its kind is paused"
    except redis.RedisError as exc:  # run it: a pause is best kept, not worth a lost job
        log.warning("job %s: could not check whether its kind is paused: %s", job_id, exc)
    spec = core.kinds.get(kind)
    ctx = JobContext(job_id, reporter, cfg, files=core.queue.connection, lifecycle=core)
    outcome: dict[str, Any] = {}

    def final(succeeded: bool) -> dict[str, Any]:
        fields = ctx.finish(succeeded)
        if succeeded and outcome.get("result") is not None:  # None: the kind returns nothing
            fields["result"] = outcome["result"]
        return fields

    log.info("job %s started (%s)", job_id, kind)
    try:
        with job_boundary(job_id, reporter, final):
            if spec is None:
                raise UnknownKind(f"this worker knows no job kind {kind!r}")
            if uploads:
                stored = UploadStore(core.client, cfg.JOB_TTL).get(job_id, list(uploads))
                kind_args = {**kind_args, **stored}
            outcome["result"] = checked_result(resolve(spec)(ctx, **kind_args))
            if ctx.acknowledged:  # it returned once it saw the cancel: it ends cancelled
                raise CancelRequested(job_id)
    finally:
        ctx.finish(False)
    log.info("job %s done (%s)", job_id, kind)
    return "done"


def release(job_id: str, kind_name: str) -> str:
    """RQ entry point (``RELEASE_JOB``): a scheduled job of an external kind is due, so
    it joins its kind's queue, where a worker claims it over HTTP."""
    lifecycle(Config(role=WORKER)).release(job_id, kind_name)
    log.info("job %s (%s) released to its external workers", job_id, kind_name)
    return "released"


def release_retry(job_id: str, attempt: int) -> str:
    """RQ entry point (``RETRY_JOB``, run by RQ's scheduler at the retry's time): the
    failed job's next ``attempt`` is due, so it joins its queue in its tenant's turn."""
    state = lifecycle(Config(role=WORKER)).release_retry(job_id, attempt)
    return "queued" if state is not None else "not due"
