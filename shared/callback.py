"""Client for the progress callback, usable by any Python worker.

``ProgressReporter.report()`` POSTs one update to ``/api/progress`` with the
bearer token. Connection errors, timeouts, 429 and 5xx answers are retried
with exponential backoff and full jitter, for at most ``retry_seconds`` per
update. An optional ``fallback`` (for example writing the state straight into
Redis) then takes the update, so the final state is never lost; once it has,
the reporter gives the rest of the job's updates to the fallback at once
instead of waiting for the site again.

A refusal by the site (4xx) is a bug in the caller or a wrong address:

* 409: the job was retried under this reporter (its token names an earlier
  attempt): ``superseded`` and ``job_ended`` become true, the update is
  dropped quietly and so is every later one;
* 401 (a token the site does not take) and 413 (too large) raise
  :class:`ReportError`, except that a job's end (a terminal state) refused
  with 401 still goes to the fallback: an end is never left unrecorded;
* any other 4xx means something else answers at the address (another program
  on that port): the fallback takes the update, as when nothing answers.

``url`` is the callback URL, or a callable that gives it (None while it is not
known yet: retried like an unreachable site). After each accepted update,
``last_applied`` and ``last_state`` say whether the site applied it and what
state the job is in now: a job that was cancelled on the site shows up as
``job_ended`` so the worker can stop; a job asked to stop (a cancel of a running
job) sets ``cancel_requested``, for good, so the worker stops and says so.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests

from shared.errors import JobcastError
from shared.protocol import (
    APPLIED_HEADER,
    CANCEL_HEADER,
    NO_RESULT,
    RUNNING,
    STATE_HEADER,
    TERMINAL_STATES,
    ProgressUpdate,
    cut_line,
)

log = logging.getLogger(__name__)

Fallback = Callable[[ProgressUpdate], object]
Url = str | Callable[[], str | None]
# 4xx answers that are the site's own refusal, not another program at the address.
SITE_REFUSALS = frozenset({401, 409, 413})


class ReportError(JobcastError):
    """The site refused an update (4xx) or could not be reached in time."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ProgressReporter:
    """Reports job progress to the site's callback endpoint."""

    def __init__(
        self,
        url: Url,
        token: str,
        *,
        retry_seconds: float = 30.0,
        timeout: float = 5.0,
        fallback: Fallback | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.token = token
        self.retry_seconds = retry_seconds
        self.timeout = timeout
        self.fallback = fallback
        self.session = session or requests.Session()
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last_seq = 0
        self.last_applied: bool | None = None
        self.last_state: str | None = None
        self.superseded = False
        self.falling_back = False  # the fallback took an update: it takes the rest
        self.cancel_requested = False  # an answer said the job was asked to stop

    @property
    def job_ended(self) -> bool:
        """True when the site dropped the last update because the job had already
        ended, or because it was retried (a new attempt runs elsewhere)."""
        return self.superseded or (self.last_applied is False
                                   and self.last_state in TERMINAL_STATES)

    def next_seq(self) -> int:
        """A sequence number above any this process sent before (microseconds)."""
        with self._lock:
            self._last_seq = max(self._last_seq + 1, time.time_ns() // 1000)
            return self._last_seq

    def report(
        self,
        job_id: str,
        progress: int,
        state: str = RUNNING,
        message: str = "",
        stage: str = "",
        *,
        current: int | None = None,
        total: int | None = None,
        result: Any = NO_RESULT,
        lines: Sequence[str] = (),
        retry: bool = True,
    ) -> bool:
        """Send one update; True when the site took it, False when the fallback did.

        ``current``/``total`` report "n of total", ``result`` goes with
        ``succeeded``, ``lines`` are new log lines, ``retry`` False (with
        ``failed``) ends the job without its kind's retries. Raises
        :class:`ReportError` on a 4xx answer, or when the site cannot be
        reached in time and there is no fallback.
        """
        update = ProgressUpdate(job_id=job_id, progress=progress, state=state,
                                message=message, stage=stage, seq=self.next_seq(),
                                current=current, total=total, result=result,
                                log=tuple(cut_line(line) for line in lines), retry=retry)
        if self.falling_back and self.fallback is not None:
            self.fallback(update)
            return False
        try:
            self.send(update)
            return True
        except ReportError as exc:
            if self.fallback is None or not self._may_fall_back(exc, state):
                raise
            log.warning("job %s: %s; storing its updates through the fallback", job_id, exc)
            self.falling_back = True
            self.fallback(update)
            return False

    @staticmethod
    def _may_fall_back(exc: ReportError, state: str) -> bool:
        """Whether the fallback may take an update the site did not: unreachable,
        busy (429, 5xx), another program at the address (a 4xx that is not the site's
        own refusal), or a job's end refused for its token (401)."""
        status = exc.status
        if status is None or status == 429 or status >= 500:
            return True
        if status not in SITE_REFUSALS:
            return True
        return status == 401 and state in TERMINAL_STATES

    def send(self, update: ProgressUpdate) -> None:
        """POST ``update``, retrying transient failures for ``retry_seconds``.

        Once superseded (409: the job was retried) nothing is sent any more.
        """
        if self.superseded:
            self.last_applied = False
            return
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.1
        attempt = 0
        while True:
            attempt += 1
            url = self.url() if callable(self.url) else self.url
            if url is None:
                status, reason = None, "the site has not announced its address (set SITE_URL)"
            else:
                status, reason = self._post(update, url)
                if status is not None and status < 400:
                    return
                if status == 409:
                    log.info("job %s was retried: this attempt stops reporting (%s)",
                             update.job_id, reason)
                    self.superseded = True
                    self.last_applied = False
                    self.last_state = None
                    return
                if status is not None and status < 500 and status != 429:
                    raise ReportError(f"callback to {url} refused ({status}): {reason}", status)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReportError(
                    f"callback failed after {attempt} attempt(s): {reason}", status
                )
            pause = min(remaining, random.uniform(0, delay))
            log.info("callback attempt %s for job %s failed (%s); retrying in %.2fs",
                     attempt, update.job_id, reason, pause)
            self._sleep(pause)
            delay = min(delay * 2, 5.0)

    def _post(self, update: ProgressUpdate, url: str) -> tuple[int | None, str]:
        """One POST: its status (None when nothing answered) and, for an error, why.
        An accepted update sets ``last_applied`` and ``last_state``."""
        try:
            resp = self.session.post(url, json=update.to_json(),
                                     headers={"Authorization": f"Bearer {self.token}"},
                                     timeout=self.timeout)
        except requests.RequestException as exc:
            forget = getattr(self.url, "forget", None)
            if forget is not None:  # the site may have moved: read its address again
                forget()
            return None, f"{type(exc).__name__}: {exc}"
        if resp.status_code < 400:
            self.last_applied = resp.headers.get(APPLIED_HEADER, "1") == "1"
            self.last_state = resp.headers.get(STATE_HEADER) or None
            if resp.headers.get(CANCEL_HEADER) == "1":
                self.cancel_requested = True
            return resp.status_code, ""
        return resp.status_code, _error_text(resp)


def _error_text(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return str(body)[:200]
