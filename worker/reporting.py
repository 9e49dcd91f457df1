"""How a job reports: a reporter built from the config, and the job boundary.

By default a job reports through the site's HTTP callback; with
``WORKER_EMIT=direct`` it writes to Redis and the Socket.IO message queue
itself (:class:`DirectReporter`).

``job_boundary`` is the one catch-all of the worker: whatever a job raises
(including RQ's timeout) is logged with its traceback and reported as
``failed`` before it is re-raised for RQ to record, so a page never shows
"running" for a job that has ended. The exception is :class:`JobEnded`: the
job was cancelled (or otherwise ended) on the site, which the worker learns
from a callback answer (``checked_report``); the job then just stops.
"""

from __future__ import annotations

import logging
import os
import random
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache, partial
from typing import Any

import redis
import requests
from rq import Queue

from shared import keys
from shared.batches import after_child_change
from shared.config import Config
from shared.enqueue import start_kind_job
from shared.events import state_events
from shared.protocol import (
    FAILED,
    RUNNING,
    SUCCEEDED,
    TERMINAL_STATES,
    ProgressUpdate,
)
from shared.reporter import ProgressReporter, ReportError
from shared.signing import job_token_attempt
from shared.siteurl import CallbackAddress
from shared.snippets import SnippetStore
from shared.store import JobState, JobStore, StaleAttempt, UnknownJob
from shared.webhooks import hand_over
from worker import attempts

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _store(redis_url: str, ttl: int, log_max: int) -> JobStore:
    return JobStore(redis.Redis.from_url(redis_url, decode_responses=True), ttl=ttl,
                    log_max=log_max)


@lru_cache(maxsize=4)
def snippet_store(redis_url: str, ttl: int) -> SnippetStore:
    """The snippet store on ``redis_url`` (one per process)."""
    return SnippetStore(redis.Redis.from_url(redis_url, decode_responses=True), ttl=ttl)


def apply_and_emit(cfg: Config, update: ProgressUpdate,
                   attempt: int | None = None) -> tuple[JobState | None, str]:
    """Apply ``update`` to the job store; emit it on the message queue if configured.

    Emits what the callback emits (:func:`shared.events.state_events`) and
    returns what :meth:`JobStore.apply_or_state` does: the applied state or
    None, and the name of the state the job is in. Without a message queue
    the job id is published on :data:`shared.keys.STATE_CHANNEL`, where the
    site's relay (website/realtime/relay.py) picks it up and pushes the stored state.
    Raises :class:`UnknownJob` for an unknown job, :class:`StaleAttempt` when
    ``attempt`` is not the job's current one (it was retried) and
    ``redis.RedisError`` when Redis cannot be reached.
    """
    now = time.time()
    store = _store(cfg.REDIS_URL, cfg.JOB_TTL, cfg.JOB_LOG_MAX)
    state, current = store.apply_or_state(update, now=now, attempt=attempt)
    if state is None:
        return state, current
    if cfg.SOCKETIO_MESSAGE_QUEUE:
        sio = emitter(cfg.SOCKETIO_MESSAGE_QUEUE)
        for event, payload, room in state_events(
                state, snippet_store(cfg.REDIS_URL, cfg.SNIPPET_TTL), now):
            sio.emit(event, payload, to=room)
    else:
        # "<job id>" or "<job id> <id of the log line before this update's lines>"
        message = update.job_id if state.log is None else f"{update.job_id} {state.log.after}"
        store.client.publish(keys.STATE_CHANNEL, message)
    if state.state in TERMINAL_STATES:  # the site did not see the end: its webhook is ours
        hand_over(store.client, _queue(cfg.REDIS_URL, cfg.QUEUE_NAME), update.job_id,
                  cfg.WEBHOOK_BACKOFF, cfg.JOB_TTL)
    if state.extra.get("batch_id"):  # as the site does after a child's change
        after_child_change(store.client, state, partial(_start_job, cfg, store),
                           partial(_emit, cfg.SOCKETIO_MESSAGE_QUEUE)
                           if cfg.SOCKETIO_MESSAGE_QUEUE else None)
    return state, current


@lru_cache(maxsize=4)
def _queue(redis_url: str, name: str) -> Queue:
    return Queue(name, connection=redis.Redis.from_url(redis_url))


def _start_job(cfg: Config, store: JobStore, kind: str, args: dict[str, Any],
               owner: str) -> str:
    return start_kind_job(cfg, store, _queue(cfg.REDIS_URL, cfg.QUEUE_NAME), kind, args,
                          owner=owner).job_id


def _emit(message_queue: str, event: str, payload: dict[str, Any], room: str) -> None:
    emitter(message_queue).emit(event, payload, to=room)


class DirectStore:
    """Fallback when the site is unreachable: write the state straight to Redis.

    Open pages still see it: through the Socket.IO message queue when one is
    configured (write-only emitter), else through the site's relay, which
    listens on :data:`shared.keys.STATE_CHANNEL`.
    """

    def __init__(self, cfg: Config, attempt: int | None = None) -> None:
        self.cfg = cfg
        self.attempt = attempt

    def __call__(self, update: ProgressUpdate) -> None:
        """Apply ``update`` to the job store and, if possible, emit it."""
        try:
            apply_and_emit(self.cfg, update, self.attempt)
        except UnknownJob:
            log.warning("fallback: job %s is unknown to the store", update.job_id)
        except StaleAttempt as exc:
            log.info("fallback: job %s was retried (%s); update dropped", update.job_id, exc)


class DirectReporter(ProgressReporter):
    """Reports without the site (``WORKER_EMIT=direct``).

    Each update is applied to the job store (the same Lua script as the
    callback) and emitted through the Socket.IO message queue, where every
    web process picks it up for its clients. Redis errors are retried with
    backoff for ``retry_seconds``; an unknown job raises like a 404 would.
    """

    def __init__(self, cfg: Config, sleep: Callable[[float], None] = time.sleep,
                 attempt: int | None = None) -> None:
        super().__init__(cfg.PROGRESS_URL, "", retry_seconds=cfg.REPORT_RETRY_SECONDS,
                         sleep=sleep)
        self.cfg = cfg
        self.attempt = attempt

    def send(self, update: ProgressUpdate) -> None:
        """Apply and emit ``update``, retrying while Redis is unreachable."""
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.1
        while not self.superseded:
            try:
                state, current = apply_and_emit(self.cfg, update, self.attempt)
                self.last_applied = state is not None
                self.last_state = current  # dropped: where the job stands (cancelled?)
                return
            except StaleAttempt:  # retried: a new attempt runs; stop like a 409
                self.superseded = True
                self.last_applied, self.last_state = False, None
            except UnknownJob:
                raise ReportError(f"unknown job {update.job_id}", 404) from None
            except redis.RedisError as exc:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ReportError(f"Redis unreachable: {exc}") from exc
                log.info("direct report for job %s failed (%s); retrying", update.job_id, exc)
                self._sleep(min(remaining, random.uniform(0, delay)))
                delay = min(delay * 2, 5.0)


@lru_cache(maxsize=2)
def emitter(message_queue: str):  # type: ignore[no-untyped-def]
    """A write-only Socket.IO emitter on the message queue (no eventlet needed)."""
    from flask_socketio import SocketIO

    return SocketIO(message_queue=message_queue, async_mode="threading",
                    channel="jobcast")


@lru_cache(maxsize=1)
def _http_session(pid: int) -> requests.Session:
    """One keep-alive HTTP session per process (a forked work horse gets its own)."""
    return requests.Session()


def make_reporter(cfg: Config, token: str | None = None) -> ProgressReporter:
    """A reporter for one job: its per-job token if given, else the shared one.

    With ``WORKER_EMIT=direct`` the reporter skips the site and writes to
    Redis and the Socket.IO message queue itself.
    """
    attempt = job_token_attempt(token)  # the direct paths apply to this attempt only
    if cfg.WORKER_EMIT == "direct":
        return DirectReporter(cfg, attempt=attempt)
    client = _store(cfg.REDIS_URL, cfg.JOB_TTL, cfg.JOB_LOG_MAX).client
    return ProgressReporter(
        CallbackAddress(cfg.PROGRESS_URL, client),
        token or cfg.PROGRESS_TOKEN,
        retry_seconds=cfg.REPORT_RETRY_SECONDS,
        fallback=DirectStore(cfg, attempt),
        session=_http_session(os.getpid()),
    )


class JobEnded(Exception):
    """The job was cancelled (or ended otherwise) on the site: stop working on it."""

    def __init__(self, job_id: str, state: str | None) -> None:
        super().__init__(f"job {job_id} is {state} on the site")
        self.job_id = job_id
        self.state = state


def checked_report(reporter: ProgressReporter, job_id: str, progress: int,
                   state: str = RUNNING, message: str = "", stage: str = "") -> None:
    """Report, then raise :class:`JobEnded` when the site says the job has ended."""
    reporter.report(job_id, progress, state, message, stage)
    if reporter.job_ended:
        raise JobEnded(job_id, reporter.last_state)


_REPORTED = "_jobcast_reported"


def mark_reported(exc: BaseException) -> None:
    """Note on ``exc`` that the job's failure has been reported already."""
    try:
        setattr(exc, _REPORTED, True)
    except AttributeError:  # an exception type without a __dict__
        pass


def was_reported(exc: BaseException) -> bool:
    """True when :func:`job_boundary` already reported this exception's failure."""
    return bool(getattr(exc, _REPORTED, False))


@contextmanager
def job_boundary(job_id: str, reporter: ProgressReporter,
                 final: Callable[[bool], dict[str, Any]] | None = None) -> Iterator[None]:
    """Report ``succeeded`` when the block ends, ``failed`` when it raises.

    A :class:`JobEnded` from the block (cancelled on the site) ends it quietly.
    ``final(succeeded)`` gives extra fields for the last report (the log
    lines not yet sent, the result).
    """
    attempts.started(job_id)
    try:
        yield
    except JobEnded as ended:
        log.info("job %s stopped: it is %s on the site", job_id, ended.state)
        attempts.finished(job_id, "stopped")
        return
    except BaseException as exc:  # the job boundary: report, then let RQ see it
        # RQ logs the traceback when it records the failure: once is enough.
        log.info("job %s failed: %s: %s", job_id, type(exc).__name__, exc)
        attempts.finished(job_id, FAILED, traceback.format_exc())
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        try:
            reporter.report(job_id, 0, FAILED, message[:500])
            mark_reported(exc)
        except Exception:  # noqa: BLE001 - reporting must not hide the job's error
            log.exception("could not report the failure of job %s", job_id)
        raise
    reporter.report(job_id, 100, SUCCEEDED, "", **(final(True) if final else {}))
    attempts.finished(job_id, SUCCEEDED)
