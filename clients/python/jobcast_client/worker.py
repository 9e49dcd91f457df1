"""An external worker: claim jobs of some kinds, run a Python function for each.

``Worker(base_url, worker_token, kinds={"resize": resize}).run()`` long-polls the
claim API (``POST /api/workers/claim``, ``wait`` seconds), runs the claimed job's
handler as ``handler(ctx, **args)`` on a thread of its own while the job's
reporter and heartbeat threads keep the site told and the lease renewed, and
ends the job with what the handler did:

* returned a value: ``succeeded`` with it as the result (it must be JSON);
* raised :class:`CancelRequested` (or saw ``ctx.cancelled``): ``cancelled``;
* raised :class:`PermanentFailure`: ``failed``, not retried;
* raised anything else: ``failed`` with the exception as the message (retried
  when its kind declares ``retries``);
* the attempt was superseded (:class:`JobLost`): nothing; the job is another's.

On SIGTERM (or SIGINT) the worker claims nothing more and tells the running
handler (``ctx`` raises :class:`WorkerStopping`); a handler that returns within
``stop_grace`` seconds ends its job as usual. Otherwise the job is **given back**
as the shell and Node reference workers give theirs back when they stop: the
worker stops renewing its lease and reports nothing more, so the site queues it
again for its next attempt once the lease lapses (``LEASE_SECONDS``; the last
attempt fails instead: docs/workers.md, Leases). ``on_stop="fail"`` reports it
``failed`` at once instead (retried when its kind declares ``retries``).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal

from jobcast_client import tracing
from jobcast_client.context import (
    CancelRequested,
    JobContext,
    JobLost,
    PermanentFailure,
    WorkerStopping,
)
from jobcast_client.errors import JobcastError, Unauthorized
from jobcast_client.http import Http
from jobcast_client.reporting import Heartbeat, Reporter, Signals

log = logging.getLogger(__name__)

Handler = Callable[..., Any]
FINAL_TIMEOUT = 60.0  # seconds the final report may take (retries included)
RESULT_MAX_BYTES = 64 * 1024  # a result's JSON the site keeps (shared/protocol.py)


@dataclass(frozen=True)
class Claimed:
    """A job this worker holds: the claim's answer."""

    job_id: str
    kind: str
    args: dict[str, Any]
    token: str
    attempt: int
    lease_seconds: float
    traceparent: str | None = None


class Worker:
    """Runs the jobs of ``kinds`` (``{"kind name": handler}``, external kinds of the
    site) one at a time. ``name`` shows on the job (``claimed by <name>``); ``wait`` is
    the claim's long-poll in seconds (0..30); a refused or failed claim is retried
    after ``retry_delay`` seconds, doubling up to ``retry_max``."""

    def __init__(self, base_url: str, worker_token: str, kinds: dict[str, Handler], *,
                 name: str | None = None, wait: float = 20, stop_grace: float = 10.0,
                 on_stop: Literal["give_back", "fail"] = "give_back",
                 retry_delay: float = 2.0, retry_max: float = 60.0) -> None:
        if not kinds:
            raise ValueError("kinds names at least one kind and its handler")
        self.base_url = base_url.rstrip("/")
        self.worker_token = worker_token
        self.kinds = dict(kinds)
        self.name = name or f"py-{socket.gethostname()[:40]}-{os.getpid()}"
        self.wait = wait
        self.stop_grace = stop_grace
        self.on_stop = on_stop
        self.retry_delay, self.retry_max = retry_delay, retry_max
        self.jobs_done = 0
        self.report_requests = 0  # HTTP requests that carried reports, all jobs
        self.reports_sent = 0
        self._stopping = threading.Event()
        self._claiming = False
        self._signals: Signals | None = None  # the running job's

    # -- stopping ---------------------------------------------------------------
    def stop(self) -> None:
        """Claim nothing more and tell the running handler to stop (what SIGTERM does)."""
        self._stopping.set()
        if self._signals is not None:
            self._signals.stopping = True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("worker %s: got %s; stopping", self.name, signal.Signals(signum).name)
        self.stop()
        if self._claiming:  # a claim waits up to `wait` s: leave it (see _claim)
            raise WorkerStopping("stopped while claiming")

    @contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # -- the loop -----------------------------------------------------------------
    def run(self, max_jobs: int | None = None) -> None:
        """Claim and run jobs until stopped (SIGTERM, SIGINT, :meth:`stop`) or, with
        ``max_jobs``, until that many ran. Raises :class:`Unauthorized` at once for a
        wrong worker token."""
        claims = Http(self.base_url, self.worker_token, timeout=self.wait + 15)
        pause = self.retry_delay
        said = ""
        try:
            with self._signal_handlers():
                while not self._stopping.is_set():
                    if max_jobs is not None and self.jobs_done >= max_jobs:
                        return
                    try:
                        job = self._claim(claims)
                    except WorkerStopping:
                        return
                    except Unauthorized:
                        raise
                    except JobcastError as exc:
                        if exc.message != said:
                            log.warning("worker %s: claim: %s (retrying)", self.name, exc.message)
                        said = exc.message
                        self._stopping.wait(max(pause, exc.retry_after or 0))
                        pause = min(pause * 2, self.retry_max)
                        continue
                    pause, said = self.retry_delay, ""
                    if job is not None:
                        self._run(job)
                        self.jobs_done += 1
        finally:
            claims.close()

    def _claim(self, claims: Http) -> Claimed | None:
        """One long-polling claim: the job, or None when none came within ``wait``.
        SIGTERM interrupts it (:class:`WorkerStopping`); a job the site gave in that
        instant is given back by its lease."""
        body = {"kinds": sorted(self.kinds), "worker": self.name, "wait": self.wait}
        with tracing.span("jobcast.claim", worker=self.name):
            self._claiming = True
            try:
                if self._stopping.is_set():
                    raise WorkerStopping("stopping")
                resp = claims.call("POST", "/api/workers/claim", json=body)
            finally:
                self._claiming = False
        if resp.status_code == 204:
            return None
        got = resp.json()
        return Claimed(str(got["jobId"]), str(got["kind"]), dict(got.get("args") or {}),
                       str(got["token"]), int(got.get("attempt", 1)),
                       float(got.get("leaseSeconds", 30)), got.get("traceparent"))

    # -- one job --------------------------------------------------------------------
    def _run(self, job: Claimed) -> None:
        """Run ``job``'s handler on its own thread, with its reporter and heartbeat."""
        signals = self._signals = Signals()
        signals.stopping = self._stopping.is_set()
        parent = tracing.from_traceparent(job.traceparent)
        with tracing.span(f"jobcast.run {job.kind}", parent=parent, job_id=job.job_id,
                          attempt=job.attempt) as trace:
            reporter = Reporter(self.base_url, job.job_id, job.token, signals,
                                give_up_after=2 * job.lease_seconds, trace=trace)
            beat = Heartbeat(self.base_url, self.worker_token, job.job_id, job.attempt,
                             max(1.0, job.lease_seconds / 3), signals, trace)
            ctx = JobContext(job.job_id, job.kind, job.args, job.attempt, self.name, reporter,
                             signals)
            outcome: dict[str, Any] = {}
            # in a copy of this context: the handler runs inside the run span
            runner = threading.Thread(target=contextvars.copy_context().run,
                                      args=(self._call, job, ctx, outcome),
                                      name=f"job-{job.job_id[:8]}", daemon=True)
            try:
                runner.start()
                self._supervise(runner, signals)
                self._end(job, ctx, signals, reporter, outcome)
            finally:
                beat.stop()
                reporter.close()
                self.report_requests += reporter.requests
                self.reports_sent += reporter.reports
                self._signals = None

    def _call(self, job: Claimed, ctx: JobContext, outcome: dict[str, Any]) -> None:
        """The job boundary: whatever the handler raises is the job's outcome."""
        handler = self.kinds.get(job.kind)
        try:
            if handler is None:
                raise PermanentFailure(f"this worker has no handler for kind {job.kind!r}")
            outcome["result"] = handler(ctx, **job.args)
        except BaseException as exc:  # noqa: BLE001 - the job boundary: every failure is the job's
            outcome["error"] = exc

    def _supervise(self, runner: threading.Thread, signals: Signals) -> None:
        """Wait for the handler; give up on it ``stop_grace`` s after it was told to stop
        (a SIGTERM, or its attempt lost) without stopping."""
        told: float | None = None
        while runner.is_alive():
            runner.join(0.1)
            if told is None and (signals.stopping or signals.lost):
                told = time.monotonic()
            if told is not None and time.monotonic() - told > self.stop_grace:
                log.warning("worker %s: the handler did not stop within %.0f s; leaving it",
                            self.name, self.stop_grace)
                return

    def _end(self, job: Claimed, ctx: JobContext, signals: Signals, reporter: Reporter,
             outcome: dict[str, Any]) -> None:
        """Report how the job ended (or nothing, when it is no longer this attempt's)."""
        error = outcome.get("error")
        finished = "result" in outcome or error is not None
        if signals.lost or isinstance(error, JobLost):
            log.info("job %s: %s; its handler's outcome is dropped", job.job_id,
                     signals.lost or error)
            return
        if not finished or isinstance(error, WorkerStopping):
            if self.on_stop == "give_back":
                log.info("job %s: the worker stops; the job is given back when its lease "
                         "lapses (%.0f s)", job.job_id, job.lease_seconds)
                reporter.close(flush=2.0)
                return
            report: dict[str, Any] = {"state": "failed",
                                      "message": f"worker {self.name} stopped before the job ended"}
        elif isinstance(error, CancelRequested) or (ctx.acknowledged and signals.cancel_requested):
            report = {"state": "cancelled", "message": "cancelled on request; the worker stopped"}
        elif error is not None:
            report = {"state": "failed", "message": f"{type(error).__name__}: {error}"[:500]}
            if isinstance(error, PermanentFailure):
                report["retry"] = False
            log.warning("job %s failed: %s", job.job_id, report["message"])
        else:
            report = {"state": "succeeded", "result": outcome["result"], **ctx.final_counts()}
            report = _checked_result(report)
        status = reporter.finish(report, FINAL_TIMEOUT)
        if status not in (204, 200):
            log.warning("job %s: the final report was answered %s", job.job_id, status)


def _checked_result(report: dict[str, Any]) -> dict[str, Any]:
    """A succeeded report, or a failed one when its result is no JSON or over the site's limit."""
    try:
        size = len(json.dumps(report["result"], ensure_ascii=False).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        return {"state": "failed", "retry": False,
                "message": f"the handler's result is not JSON: {exc}"[:500]}
    if size > RESULT_MAX_BYTES:
        return {"state": "failed", "retry": False,
                "message": f"the handler's result is {size} bytes as JSON; at most "
                           f"{RESULT_MAX_BYTES} are kept"}
    return report
