"""Each run of a job, for the operators' job page: which worker, when, how it ended.

``job_boundary`` calls :func:`started` and :func:`finished` around every job
function. They write, on RQ's own connection, a small list of JSON entries
(``shared.keys.job_attempts_key``) and, for a failure, the traceback under a
key of its own (``shared.keys.job_traceback_key``), read only by the
operators' page: never in the public JSON or pages. Both keys expire with the
job's hash. Outside an RQ job (a direct call in a test) they do nothing.
"""

from __future__ import annotations

import json
import logging
import time

import redis
from rq import get_current_job

from shared import keys

log = logging.getLogger(__name__)
TRACEBACK_MAX = 20_000  # characters kept (the end, where the error is)
ATTEMPTS_KEPT = 50


def _expire_with_job(conn: redis.Redis, job_id: str, *names: str) -> None:
    ttl = conn.pttl(keys.job_key(job_id))
    if isinstance(ttl, int) and ttl > 0:
        for name in names:
            conn.pexpire(name, ttl)


def started(job_id: str) -> None:
    """Record the start of a run: the worker's name and the time."""
    rq_job = get_current_job()
    if rq_job is None:
        return
    conn = rq_job.connection
    entry = {"worker": rq_job.worker_name or "", "startedAt": time.time()}
    try:
        name = keys.job_attempts_key(job_id)
        conn.rpush(name, json.dumps(entry))
        conn.ltrim(name, -ATTEMPTS_KEPT, -1)
        _expire_with_job(conn, job_id, name)
    except redis.RedisError as exc:
        log.warning("job %s: could not record the attempt: %s", job_id, exc)


def finished(job_id: str, outcome: str, traceback_text: str = "") -> None:
    """Record how the run ended (``succeeded``, ``failed``, ``stopped``) and, for a
    failure, keep the traceback for operators."""
    rq_job = get_current_job()
    if rq_job is None:
        return
    conn = rq_job.connection
    name = keys.job_attempts_key(job_id)
    try:
        raw = conn.lindex(name, -1)
        if raw is not None:
            entry = json.loads(raw)  # type: ignore[arg-type]
            entry.update(finishedAt=time.time(), outcome=outcome)
            conn.lset(name, -1, json.dumps(entry))
        if traceback_text:
            conn.set(keys.job_traceback_key(job_id), traceback_text[-TRACEBACK_MAX:])
            _expire_with_job(conn, job_id, keys.job_traceback_key(job_id))
    except (redis.RedisError, ValueError) as exc:
        log.warning("job %s: could not record the end of the attempt: %s", job_id, exc)
