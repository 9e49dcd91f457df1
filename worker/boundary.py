"""How a job reports, and the job boundary.

By default a job reports through the site's HTTP callback
(:class:`~shared.callback.ProgressReporter`); when the site cannot be reached
its fallback, :class:`DirectStore`, applies the update through this process's
lifecycle (``worker/core.py``): the same store script and the same reactions as
the site's. With ``WORKER_EMIT=direct`` every report goes that way
(:class:`DirectReporter`).

``job_boundary`` is the one catch-all of the worker: whatever a job raises
(including RQ's timeout) is reported as ``failed`` before it is re-raised for
RQ to record (and log, with its traceback), so a page never shows "running"
for a job that has ended. The exception is :class:`JobEnded`: the job was
cancelled (or otherwise ended) on the site, which the worker learns from a
callback answer (``checked_report``); the job then just stops. A job asked to
stop (a cancel while it ran) that stops, raising
:class:`~shared.kinds.CancelRequested`, is reported ``cancelled``: the cancel
was acknowledged (``shared/watch.py``).
"""

from __future__ import annotations

import logging
import os
import random
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import redis
import requests

from shared.callback import ProgressReporter, ReportError
from shared.config import Config
from shared.errors import Conflict
from shared.jobstate import CANCEL_ACKNOWLEDGED
from shared.kinds import CancelRequested, PermanentFailure
from shared.protocol import CANCELLED, FAILED, RUNNING, SUCCEEDED, ProgressUpdate
from shared.signing import job_token_attempt
from shared.siteurl import CallbackAddress
from shared.store import LeaseRevoked, StaleAttempt, UnknownJob
from worker import attempts
from worker.core import lifecycle

log = logging.getLogger(__name__)


class DirectStore:
    """Fallback when the site is unreachable: apply the update through this process's
    lifecycle (stored by the same script, pushed and reacted to as the site would)."""

    def __init__(self, cfg: Config, attempt: int | None = None) -> None:
        self.cfg = cfg
        self.attempt = attempt

    def __call__(self, update: ProgressUpdate) -> None:
        """Apply ``update`` through this process's lifecycle."""
        try:
            lifecycle(self.cfg).report(update, self.attempt)
        except UnknownJob:
            log.warning("fallback: job %s is unknown to the store", update.job_id)
        except StaleAttempt as exc:
            log.info("fallback: job %s was retried (%s); update dropped", update.job_id, exc)


class DirectReporter(ProgressReporter):
    """Reports without the site (``WORKER_EMIT=direct``): each update goes through this
    process's lifecycle (pushed through the Socket.IO message queue). Redis errors are
    retried with backoff for ``retry_seconds``; an unknown job raises like a 404 would.
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
                state, current, cancel = lifecycle(self.cfg).report(update, self.attempt)
                self.last_applied = state is not None
                self.last_state = current  # dropped: where the job stands (cancelled?)
                self.cancel_requested = self.cancel_requested or cancel
                return
            except (StaleAttempt, LeaseRevoked):  # retried or revoked: stop like a 409
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
    client = lifecycle(cfg).client
    return ProgressReporter(
        CallbackAddress(cfg.PROGRESS_URL, client),
        token or cfg.PROGRESS_TOKEN,
        retry_seconds=cfg.REPORT_RETRY_SECONDS,
        fallback=DirectStore(cfg, attempt),
        session=_http_session(os.getpid()),
    )


class JobEnded(Conflict):  # noqa: N818 - control flow, not an error
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
    except CancelRequested:  # asked to stop, and it did: the cancel is acknowledged
        log.info("job %s stopped on request", job_id)
        attempts.finished(job_id, CANCELLED)
        reporter.report(job_id, 0, CANCELLED, CANCEL_ACKNOWLEDGED,
                        **({"lines": final(False)["lines"]} if final else {}))
        return
    except BaseException as exc:  # the job boundary: report, then let RQ see it
        # RQ logs the traceback when it records the failure: once is enough.
        log.info("job %s failed: %s: %s", job_id, type(exc).__name__, exc)
        attempts.finished(job_id, FAILED, traceback.format_exc())
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        try:  # a PermanentFailure is not retried, whatever its kind declares
            reporter.report(job_id, 0, FAILED, message[:500],
                            retry=not isinstance(exc, PermanentFailure))
            mark_reported(exc)
        except Exception:  # noqa: BLE001 - reporting must not hide the job's error
            log.exception("could not report the failure of job %s", job_id)
        raise
    reporter.report(job_id, 100, SUCCEEDED, "", **(final(True) if final else {}))
    attempts.finished(job_id, SUCCEEDED)
