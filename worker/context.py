"""The context a job kind's function runs with: progress, a batched log, files.

Log lines are buffered and sent with the next report: at once when 100 are
waiting, else at most ``FLUSH_SECONDS`` after the first of them (a small
flusher thread per running job does that while the function works). A job
that logs 1,000 lines a second thus makes about ten callbacks a second.

A cancel of the running job (``shared/watch.py``) reaches the function through
the context: ``cancelled`` is true once an answer to a report said so, or Redis
does (read at most every ``CANCEL_CHECK_SECONDS``, for a function that does not
report while it works); ``check_cancelled()``, ``progress()`` and ``log()`` then
raise :class:`~shared.kinds.CancelRequested`.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from typing import Any

import redis

from shared import keys
from shared.callback import ProgressReporter, ReportError
from shared.config import Config
from shared.kinds import CancelRequested
from shared.protocol import LOG_BATCH_MAX, RUNNING, cut_line
from shared.quotas import count_for_job
from worker.boundary import JobEnded

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.1
CANCEL_CHECK_SECONDS = 0.25  # how often ``cancelled`` may read Redis
FILE_MAX_BYTES = 16 * 1024 * 1024
_FILE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


class JobContext:
    """What a kind's function gets: ``progress``, ``log``, ``save_file``, ``config`` and
    ``lifecycle`` (the worker's, for kinds that start or control jobs)."""

    def __init__(self, job_id: str, reporter: ProgressReporter, config: Config,
                 files: redis.Redis | None = None, lifecycle: Any = None) -> None:
        self.job_id = job_id
        self.config = config
        self.lifecycle = lifecycle
        self._reporter = reporter
        self._files = files
        self._lock = threading.Lock()  # one report at a time, lines in order
        self._pending: list[str] = []
        self._first_pending = 0.0
        self._progress = 0
        self._counts: tuple[int, int] | None = None
        self._message = ""
        self._stage = ""
        self._ended: JobEnded | None = None
        self._failed: ReportError | None = None
        self._cancel_seen = False  # Redis said the job was asked to stop
        self._cancel_read = 0.0  # monotonic time of the last read
        self.acknowledged = False  # the function was told: the job ends cancelled
        self._stop = threading.Event()
        # In the run's context: the flusher's callbacks belong to the job's trace too.
        self._flusher = threading.Thread(target=contextvars.copy_context().run,
                                         args=(self._flush_loop,), name=f"log-{job_id[:8]}",
                                         daemon=True)
        self._flusher.start()

    # -- what the function calls ---------------------------------------------
    def progress(self, current: int, total: int | None = None, message: str = "",
                 stage: str = "") -> None:
        """Report ``current`` of ``total`` (or ``current`` percent with no total)."""
        self._raise_if_ended()
        with self._lock:
            if total is None:
                self._progress, self._counts = max(0, min(100, int(current))), None
            else:
                self._counts = (max(0, min(int(current), int(total))), max(0, int(total)))
            self._message, self._stage = message, stage
            self._send_locked()
        self._raise_if_ended()

    def log(self, line: str) -> None:
        """Queue a line for the job's log (sent in batches)."""
        self._raise_if_ended()
        for part in str(line).splitlines() or [""]:
            with self._lock:
                if not self._pending:
                    self._first_pending = time.monotonic()
                self._pending.append(cut_line(part))
                if len(self._pending) >= LOG_BATCH_MAX:
                    self._send_locked()
        self._raise_if_ended()

    def save_file(self, name: str, data: bytes, content_type: str = "text/plain") -> str:
        """Keep ``data`` with the job (for ``JOB_TTL``) to be downloaded as ``name``; its
        bytes count against the job's owners' quota (``shared/quotas.py``)."""
        if not name or not set(name) <= _FILE_NAME_CHARS or name.startswith("."):
            raise ValueError("file names are letters, digits, '.', '_' and '-'")
        if len(data) > FILE_MAX_BYTES:
            raise ValueError(f"a job's file holds at most {FILE_MAX_BYTES} bytes")
        if self._files is None:
            raise RuntimeError("this worker keeps no files")
        key = keys.job_file_key(self.job_id, name)
        pipe = self._files.pipeline()
        pipe.hset(key, mapping={"data": data, "type": content_type})
        pipe.expire(key, self.config.JOB_TTL)
        pipe.execute()
        count_for_job(self._files, self.job_id, len(data))
        return name

    @property
    def cancelled(self) -> bool:
        """True once the job was asked to stop (see the module); reading it while it is
        true acknowledges the cancel: the job then ends ``cancelled`` however it ends."""
        if not (self._reporter.cancel_requested or self._cancel_seen):
            self._read_cancel()
        seen = self._reporter.cancel_requested or self._cancel_seen
        self.acknowledged = self.acknowledged or seen
        return seen

    def check_cancelled(self) -> None:
        """Raise :class:`~shared.kinds.CancelRequested` if the job was asked to stop."""
        if self.cancelled:
            raise CancelRequested(self.job_id)

    def _read_cancel(self) -> None:
        """Read the job's ``cancel_requested`` from Redis, at most every
        ``CANCEL_CHECK_SECONDS`` (a function that does not report learns it so)."""
        client = getattr(self.lifecycle, "client", None)
        now = time.monotonic()
        if client is None or now - self._cancel_read < CANCEL_CHECK_SECONDS:
            return
        self._cancel_read = now
        try:
            found = client.hmget(keys.job_key(self.job_id), ["state", "cancel_requested"])
        except redis.RedisError as exc:
            log.warning("job %s: could not read whether it was cancelled: %s", self.job_id, exc)
            return
        self._cancel_seen = found[0] == RUNNING and bool(found[1])

    # -- the runner's side -----------------------------------------------------
    def finish(self, succeeded: bool) -> dict[str, Any]:
        """Stop the flusher; the fields for the final report (lines not yet sent)."""
        self._stop.set()
        self._flusher.join(timeout=2)
        with self._lock:
            lines, self._pending = self._pending, []
        fields: dict[str, Any] = {"lines": lines}
        if self._counts is not None and succeeded:
            fields["current"], fields["total"] = self._counts[1], self._counts[1]
        return fields

    def _raise_if_ended(self) -> None:
        if self._ended is not None:
            raise self._ended
        if self._failed is not None:
            raise self._failed
        if self._reporter.cancel_requested:  # an answer said so: stop here
            self.acknowledged = True
            raise CancelRequested(self.job_id)

    def _send_locked(self) -> None:
        lines, self._pending = self._pending, []
        counts = self._counts
        kwargs: dict[str, Any] = {"lines": lines}
        progress = self._progress
        if counts is not None:
            kwargs["current"], kwargs["total"] = counts
            progress = 100 if counts[1] == 0 else counts[0] * 100 // counts[1]
        self._reporter.report(self.job_id, progress, RUNNING, self._message, self._stage,
                              **kwargs)
        if self._reporter.job_ended:
            self._ended = JobEnded(self.job_id, self._reporter.last_state)

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS / 2):
            with self._lock:
                due = self._pending and time.monotonic() - self._first_pending >= FLUSH_SECONDS
                if due and self._ended is None:
                    try:
                        self._send_locked()
                    except ReportError as exc:  # the function sees it on its next call
                        log.warning("job %s: sending log lines failed: %s", self.job_id, exc)
                        self._failed = exc
