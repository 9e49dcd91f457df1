"""A claimed job's reports and heartbeats, each from a thread of its own.

:class:`Reporter` sends ``POST /api/progress`` with the claim's per-job token.
Reports that come within ``WINDOW`` (0.1 s) of the first one waiting are sent
together: consecutive progress reports become one (the newest counts and
message, every log line of them all, in order), and what cannot be merged (more
than 100 lines, a final state) goes as a batch, a JSON array, in order. Each
report carries a ``seq`` (microseconds, increasing), so the site drops none as
out of date and applies them in order. The answers say what became of the job:
``X-Jobcast-Cancel-Requested`` (or ``cancelRequested``), the job's state, 409 for
a superseded attempt; :class:`Signals` keeps that for the handler's context.

:class:`Heartbeat` renews the lease (``POST /api/workers/heartbeat``) every third
of ``leaseSeconds``, for a handler that works long without reporting, and reads
the same news from its answer.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import requests

from jobcast_client import tracing
from jobcast_client.errors import Unavailable
from jobcast_client.http import Http
from jobcast_client.models import TERMINAL_STATES

log = logging.getLogger(__name__)

WINDOW = 0.1  # seconds reports wait for others to go with them
LOG_BATCH_MAX = 100  # log lines per report (shared/protocol.py)
BATCH_MAX = 100  # reports per request (website/progress/reports.py)
RETRY_FIRST, RETRY_MAX = 0.5, 5.0  # seconds between tries of a report the site did not take


class Signals:
    """What the site said about a job while its handler runs (set from other threads)."""

    def __init__(self) -> None:
        self.cancel_requested = False
        self.lost = ""  # why the job is no longer this attempt's ("" while it is)
        self.stopping = False  # the worker was told to stop (SIGTERM)

    def read_state(self, state: object, cancel: bool) -> None:
        """Take a job state and cancel flag from an answer."""
        if cancel:
            self.cancel_requested = True
        if state in TERMINAL_STATES and not self.lost:
            self.lost = f"the job is {state} already"


class Reporter:
    """Sends one job's reports in order, coalesced, from its own thread."""

    def __init__(self, base_url: str, job_id: str, token: str, signals: Signals,
                 give_up_after: float, trace: tracing.Context = None) -> None:
        self.job_id = job_id
        self.http = Http(base_url, token, timeout=30)
        self.signals = signals
        self.give_up_after = give_up_after
        self.trace = trace
        self.requests = 0  # HTTP requests sent (for tests and curious callers)
        self.reports = 0
        self.final_status: int | None = None  # what the final report was answered
        self._pending: list[dict[str, Any]] = []
        self._first = 0.0
        self._seq = 0
        self._urgent = False
        self._closed = False
        self._sending = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=f"report-{job_id[:8]}", daemon=True)
        self._thread.start()

    def add(self, fields: dict[str, Any], lines: list[str]) -> None:
        """Queue a running report of ``fields`` (progress or current/total, message,
        stage) with ``lines``, merged into the last waiting one when it can be."""
        with self._cond:
            if self._closed:
                return
            if not self._pending:
                self._first = time.monotonic()
            last = self._pending[-1] if self._pending else None
            if last is None or last["state"] != "running" \
                    or len(last.get("log", ())) >= LOG_BATCH_MAX:
                last = {"jobId": self.job_id, "state": "running"}
                self._pending.append(last)
            for name in ("progress", "current", "total"):
                last.pop(name, None)
            last.update(fields)
            while lines:
                room = LOG_BATCH_MAX - len(last.get("log", ()))
                if room <= 0:
                    last = {"jobId": self.job_id, "state": "running", **fields}
                    self._pending.append(last)
                    room = LOG_BATCH_MAX
                last.setdefault("log", []).extend(lines[:room])
                lines = lines[room:]
            self._cond.notify_all()

    def finish(self, report: dict[str, Any], timeout: float) -> int | None:
        """Send everything waiting, then the final ``report``; its answer's status
        (None when it could not be sent within ``timeout``). Nothing is sent after it."""
        with self._cond:
            self._pending.append({"jobId": self.job_id, **report, "final": True})
            self._urgent = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: self.final_status is not None or self._closed,
                                timeout=timeout)
            return self.final_status

    def close(self, flush: float = 0.0) -> None:
        """Stop (after sending what waits, for up to ``flush`` seconds)."""
        with self._cond:
            if flush > 0:
                self._urgent = True
                self._cond.notify_all()
                self._cond.wait_for(lambda: not self._pending and not self._sending, timeout=flush)
            self._closed = True
            self._pending.clear()
            self._cond.notify_all()
        self.http.close()

    def _take(self) -> list[dict[str, Any]] | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._pending:
                    due = self._first + WINDOW - time.monotonic()
                    if self._urgent or due <= 0:
                        break
                    self._cond.wait(due)
                else:
                    self._cond.wait()
            taken, self._pending = self._pending[:BATCH_MAX], self._pending[BATCH_MAX:]
            self._first = time.monotonic()
            self._urgent = bool(self._pending and self._pending[-1].get("final"))
            self._sending = True
        for report in taken:
            self._seq = max(self._seq + 1, time.time_ns() // 1000)
            report["seq"] = self._seq
        return taken

    def _loop(self) -> None:
        while (taken := self._take()) is not None:
            final = taken[-1].pop("final", False)
            status = self._send(taken)
            with self._cond:
                self._sending = False
                if final:
                    self.final_status = status if status is not None else 0
                    self._closed = True
                self._cond.notify_all()

    def _send(self, reports: list[dict[str, Any]]) -> int | None:
        """Send until the site answers (or ``give_up_after`` passed); the status."""
        started, pause = time.monotonic(), RETRY_FIRST
        while True:
            try:
                body: Any = reports[0] if len(reports) == 1 else reports
                resp = self.http.send("POST", "/api/progress", json=body, trace=self.trace)
                self.requests += 1
                if resp.status_code != 429 and resp.status_code < 500:
                    self.reports += len(reports)
                    return self._read(resp, len(reports))
                reason = f"HTTP {resp.status_code}"
            except Unavailable as exc:
                reason = exc.message
            if time.monotonic() - started > self.give_up_after or self._closed:
                log.warning("job %s: reports not taken for %.0f s (%s): giving up",
                            self.job_id, self.give_up_after, reason)
                self.signals.lost = self.signals.lost or "the site did not take its reports"
                return None
            log.info("job %s: report not taken (%s); trying again", self.job_id, reason)
            time.sleep(pause)
            pause = min(pause * 2, RETRY_MAX)

    def _read(self, resp: requests.Response, count: int) -> int:
        """Note what the answer says; the status (a batch's: its worst report's)."""
        if resp.status_code == 200 and count > 1:
            results = resp.json().get("results", [])
            statuses = [int(r.get("status", 0)) for r in results]
            for result in results:
                self.signals.read_state(result.get("state"), bool(result.get("cancelRequested")))
            status = max(statuses, default=204)
        else:
            status = resp.status_code
            self.signals.read_state(resp.headers.get("X-Jobcast-State"),
                                    resp.headers.get("X-Jobcast-Cancel-Requested") == "1")
        if status == 409:
            self.signals.lost = "this attempt was superseded (409): the job is another's now"
        elif status in (401, 404):
            self.signals.lost = f"the site refused this job's token ({status})"
        elif status >= 400:
            log.warning("job %s: a report was refused (%s): %s", self.job_id, status,
                        resp.text[:300])
        return status


class Heartbeat:
    """Renews one job's lease every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, base_url: str, worker_token: str, job_id: str, attempt: int,
                 interval: float, signals: Signals, trace: tracing.Context = None) -> None:
        self.http = Http(base_url, worker_token, timeout=max(5.0, interval))
        self.body = {"jobIds": [{"jobId": job_id, "attempt": attempt}]}
        self.job_id = job_id
        self.interval = interval
        self.signals = signals
        self.trace = trace
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{job_id[:8]}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (the lease then lapses unless a report renews it)."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.http.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                resp = self.http.send("POST", "/api/workers/heartbeat", json=self.body,
                                      trace=self.trace)
            except Unavailable as exc:
                log.info("job %s: heartbeat: %s", self.job_id, exc.message)
                continue
            if resp.status_code != 200:
                log.warning("job %s: heartbeat answered %s", self.job_id, resp.status_code)
                continue
            for job in resp.json().get("jobs", []):
                if job.get("jobId") != self.job_id:
                    continue
                self.signals.read_state(job.get("state"), bool(job.get("cancelRequested")))
                if not job.get("held") and not self.signals.lost:
                    self.signals.lost = "this attempt no longer holds the job (lease lost)"
