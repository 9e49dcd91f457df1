"""Client for the progress callback, usable by any Python worker.

``ProgressReporter.report()`` POSTs one update to ``/api/progress`` with the
bearer token. Connection errors, timeouts, 429 and 5xx answers are retried
with exponential backoff and full jitter, for at most ``retry_seconds`` per
update; a 4xx answer is a bug in the caller and raises at once. When the
site stays unreachable, an optional ``fallback`` (for example writing the
state straight into Redis) is called so the final state is never lost.

After each accepted update, ``last_applied`` and ``last_state`` say whether
the site applied it and what state the job is in now: a job that was
cancelled on the site shows up as ``job_ended`` so the worker can stop.
A 409 answer means the job was retried under this reporter (its token names
an earlier attempt): ``superseded`` and ``job_ended`` become true, the update
is dropped quietly and so is every later one.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import requests

from shared.protocol import (
    APPLIED_HEADER,
    NO_RESULT,
    RUNNING,
    STATE_HEADER,
    TERMINAL_STATES,
    ProgressUpdate,
    cut_line,
)

log = logging.getLogger(__name__)

Fallback = Callable[[ProgressUpdate], object]


class ReportError(RuntimeError):
    """The site refused an update (4xx) or could not be reached in time."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ProgressReporter:
    """Reports job progress to the site's callback endpoint."""

    def __init__(
        self,
        url: str,
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
    ) -> bool:
        """Send one update; True when the site took it, False when the fallback did.

        ``current``/``total`` report "n of total", ``result`` goes with
        ``succeeded``, ``lines`` are new log lines. Raises
        :class:`ReportError` on a 4xx answer, or when the site cannot be
        reached in time and there is no fallback.
        """
        update = ProgressUpdate(job_id=job_id, progress=progress, state=state,
                                message=message, stage=stage, seq=self.next_seq(),
                                current=current, total=total, result=result,
                                log=tuple(cut_line(line) for line in lines))
        try:
            self.send(update)
            return True
        except ReportError as exc:
            if exc.status is not None and exc.status < 500 and exc.status != 429:
                raise
            if self.fallback is None:
                raise
            log.warning("site unreachable for job %s (%s); using fallback", job_id, exc)
            self.fallback(update)
            return False

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
            status: int | None = None
            try:
                resp = self.session.post(
                    self.url,
                    json=update.to_json(),
                    headers={"Authorization": f"Bearer {self.token}"},
                    timeout=self.timeout,
                )
                status = resp.status_code
                if status < 400:
                    self.last_applied = resp.headers.get(APPLIED_HEADER, "1") == "1"
                    self.last_state = resp.headers.get(STATE_HEADER) or None
                    return
                reason = _error_text(resp)
                if status == 409:
                    log.info("job %s was retried: this attempt stops reporting (%s)",
                             update.job_id, reason)
                    self.superseded = True
                    self.last_applied = False
                    self.last_state = None
                    return
                if status < 500 and status != 429:
                    raise ReportError(f"callback refused ({status}): {reason}", status)
            except requests.RequestException as exc:
                reason = f"{type(exc).__name__}: {exc}"
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


def _error_text(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return str(body)[:200]
