"""The wire contract between worker, site and browser, defined once.

Event names, room names, job states, the progress-callback payload and its
validation live here so that the site, the worker and the tests agree.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.errors import Invalid, TooLarge

# Socket.IO event names.
UPDATE_PROGRESS = "updateProgress"
SUBSCRIBE = "subscribe"
BATCH_PROGRESS = "batchProgress"  # a batch's totals (shared.batches.batch_totals), to batch:<id>
JOB_LOG = "jobLog"  # {jobId, after, lines: [{id, at, text}]}: new lines of a job's log
# (a replay cut short by the connection's byte budget also has ``more: true``: the
# lines after its last one are read from ``GET /api/jobs/<id>/log?after=<id>``)

# Handshake query parameters by which a client says it comes to watch a room:
# ``jobId`` (joined at connect), or ``watch`` (any value) from a page that
# subscribes right after connecting. Such a handshake may use the whole
# Socket.IO cap; one without may use only what is not kept for watchers
# (``SOCKETIO_WATCHER_SHARE``).
JOB_QUERY = "jobId"
WATCH_QUERY = "watch"

# Dotted names the site enqueues, so that website/ never imports worker/.
RUN_KIND_JOB = "worker.runner.run_kind"  # runs any declared kind (shared.kinds)
RELEASE_JOB = "worker.runner.release"  # puts a due job of an external kind on its queue
RETRY_JOB = "worker.runner.release_retry"  # queues a failed job's next attempt (its kind retries)

# Job kinds (the ``kind`` field of a job's hash).
DEMO_KIND = "demo"

# Job states. A scheduled job waits for its time (RQ's scheduler then queues it); a
# waiting one for the jobs it was started after (``after``, shared/after.py).
SCHEDULED = "scheduled"
WAITING = "waiting"
QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (SCHEDULED, WAITING, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})
# States a worker may report through the callback.
REPORTABLE_STATES = (RUNNING, SUCCEEDED, FAILED, CANCELLED)

MESSAGE_MAX = 500
STAGE_MAX = 80
RESULT_MAX_BYTES = 64 * 1024  # a job's result, as JSON text
LOG_BATCH_MAX = 100  # lines per report
LOG_LINE_MAX_BYTES = 2048  # longer lines are cut
# A report: the result and a full batch of log lines, with room for the rest.
CALLBACK_MAX_BYTES = RESULT_MAX_BYTES + LOG_BATCH_MAX * (LOG_LINE_MAX_BYTES + 64) + 16 * 1024
LOG_START = "0-0"  # the log id before the first line: ``lastLogId`` to replay from the start

# Job control: which states a job may be cancelled from, or retried from.
CANCELLABLE_STATES = frozenset({SCHEDULED, WAITING, QUEUED, RUNNING})
RETRYABLE_STATES = frozenset({FAILED, CANCELLED})

# Operations dashboard: every dashboard page joins one room, which gets one
# compact ``jobChanged`` event per job change (see ``JobState.to_dashboard``).
DASHBOARD_ROOM = "dashboard"
DASHBOARD_UPDATE = "jobChanged"
DASHBOARD_SUBSCRIBE = "watchDashboard"

# Response headers of the progress callback: whether the update was applied,
# and the job's state after it (a worker stops when its job ended elsewhere).
APPLIED_HEADER = "X-Jobcast-Applied"
STATE_HEADER = "X-Jobcast-State"
# ... and, set to 1, that the job was asked to stop (a cancel of a running job): the
# worker stops and reports ``cancelled`` (else it is stopped by force, shared/watch.py).
CANCEL_HEADER = "X-Jobcast-Cancel-Requested"


class PayloadError(Invalid):
    """A progress payload that does not follow the contract."""


class PayloadTooLarge(PayloadError, TooLarge):
    """A part of a payload (the result) is over its size limit: answered with 413."""


def room_for(job_id: str) -> str:
    """The Socket.IO room of the connections watching ``job_id``."""
    return f"job:{job_id}"


def batch_room(batch_id: str) -> str:
    """The Socket.IO room of the connections watching a batch."""
    return f"batch:{batch_id}"


_UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_uuid(value: object) -> bool:
    """True for a canonical UUID string (as produced by ``str(uuid.uuid4())``)."""
    return isinstance(value, str) and _UUID_TEXT.fullmatch(value) is not None


def new_id() -> str:
    """A fresh random job or snippet id."""
    return str(uuid.uuid4())


def iso_time(timestamp: float, timespec: str = "milliseconds") -> str:
    """A Unix time as ISO 8601 UTC with a ``Z`` (``2024-01-02T03:04:05.678Z``): how
    the JSON API writes every time (stored times are epoch seconds)."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z")


NO_RESULT: Any = object()


def cut_line(text: str) -> str:
    """A log line cut to ``LOG_LINE_MAX_BYTES`` of UTF-8, never inside a character."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= LOG_LINE_MAX_BYTES:
        return text
    return raw[:LOG_LINE_MAX_BYTES].decode("utf-8", "ignore")


def progress_of(current: int, total: int) -> int:
    """Whole percent done for ``current`` of ``total`` (100 for nothing to do)."""
    return 100 if total == 0 else min(100, current * 100 // total)


def _optional_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise PayloadError(f"{name} must be a non-negative integer")
    return value


def _text_field(body: dict[str, Any], name: str, limit: int) -> str:
    value = body.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise PayloadError(f"{name} must be a string")
    return value[:limit]


def _log_lines(body: dict[str, Any]) -> tuple[str, ...]:
    lines = body.get("log")
    if lines is None:
        return ()
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise PayloadError("log must be a list of strings")
    if len(lines) > LOG_BATCH_MAX:
        raise PayloadError(f"log takes at most {LOG_BATCH_MAX} lines per report")
    return tuple(cut_line(line) for line in lines)


# A report's seq is the reporter's clock in microseconds (ProgressReporter.next_seq).
# The callback refuses (400) a seq more than this many seconds ahead of the
# site's clock: no attempt could have sent it, and a stored huge seq would drop
# every later report of the attempt.
SEQ_MAX_AHEAD_SECONDS = 300


def seq_limit(now: float) -> int:
    """The largest seq the callback accepts at ``now`` (epoch seconds)."""
    return int((now + SEQ_MAX_AHEAD_SECONDS) * 1_000_000)


@dataclass(frozen=True)
class ProgressUpdate:
    """One progress report from a worker (the body of ``POST /api/progress``).

    ``current`` and ``total`` give progress as "n of total" (``progress`` is
    worked out from them when a report leaves it out; a final state needs
    none); ``result`` (any JSON,
    only with ``succeeded``) is what the job produced; ``log`` holds new lines
    of the job's log, appended with the update, atomically. ``retry`` False (only
    with ``failed``) ends the job even when its kind would retry it (a permanent
    failure).
    """

    job_id: str
    progress: int
    state: str = RUNNING
    message: str = ""
    stage: str = ""
    seq: int | None = None
    current: int | None = None
    total: int | None = None
    result: Any = NO_RESULT
    log: tuple[str, ...] = ()
    retry: bool = True

    @property
    def has_result(self) -> bool:
        """True when the report carries a result (which may be JSON ``null``)."""
        return self.result is not NO_RESULT

    def result_json(self) -> str:
        """The result as compact JSON text ('' when there is none)."""
        if not self.has_result:
            return ""
        return json.dumps(self.result, ensure_ascii=False, separators=(",", ":"))

    def to_json(self) -> dict[str, Any]:
        """The JSON body a worker sends."""
        body: dict[str, Any] = {
            "jobId": self.job_id,
            "progress": self.progress,
            "state": self.state,
            "message": self.message,
        }
        if self.stage:
            body["stage"] = self.stage
        if self.seq is not None:
            body["seq"] = self.seq
        if self.total is not None:
            body["current"] = self.current or 0
            body["total"] = self.total
        if self.has_result:
            body["result"] = self.result
        if self.log:
            body["log"] = list(self.log)
        if not self.retry:
            body["retry"] = False
        return body

    @classmethod
    def from_json(cls, body: object, now: float | None = None) -> ProgressUpdate:
        """Validate a decoded JSON body; raise :class:`PayloadError` with the reason.

        Raises :class:`PayloadTooLarge` for a result over ``RESULT_MAX_BYTES``.
        Given ``now`` (epoch seconds), a seq above :func:`seq_limit` is refused.
        """
        if not isinstance(body, dict):
            raise PayloadError("body must be a JSON object")
        current, total = _optional_int(body, "current"), _optional_int(body, "total")
        if (current is None) != (total is None):
            raise PayloadError("current and total go together")
        if current is not None and total is not None and current > total:
            raise PayloadError("current must not be above total")
        missing = [k for k in ("jobId", "state") if k not in body]
        ended = isinstance(body.get("state"), str) and body["state"] in TERMINAL_STATES
        if "progress" not in body and total is None and not ended:
            missing.insert(1, "progress")
        if missing:
            raise PayloadError(f"missing field(s): {', '.join(missing)}")
        job_id = body["jobId"]
        if not is_uuid(job_id):
            raise PayloadError("jobId must be a UUID string")
        progress = body.get("progress")
        if progress is None and current is not None and total is not None:
            progress = progress_of(current, total)
        elif progress is None and ended:  # the stored progress stays (100 once succeeded)
            progress = 0
        if isinstance(progress, bool) or not isinstance(progress, (int, float)):
            raise PayloadError("progress must be a number from 0 to 100")
        if progress != progress or not 0 <= progress <= 100:  # NaN or out of range
            raise PayloadError("progress must be a number from 0 to 100")
        state = body["state"]
        if state not in REPORTABLE_STATES:
            raise PayloadError(f"state must be one of: {', '.join(REPORTABLE_STATES)}")
        seq = body.get("seq")
        if seq is not None and (
            isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**53
        ):
            raise PayloadError("seq must be a non-negative integer")
        if seq is not None and now is not None and seq > seq_limit(now):
            raise PayloadError(
                f"seq is too far ahead: it must be a time in microseconds at most "
                f"{SEQ_MAX_AHEAD_SECONDS} s ahead of the site's clock (or a counter below it)")
        result = body.get("result", NO_RESULT)
        if result is not NO_RESULT:
            if state != SUCCEEDED:
                raise PayloadError("result goes only with state succeeded")
            size = len(json.dumps(result, ensure_ascii=False).encode("utf-8"))
            if size > RESULT_MAX_BYTES:
                raise PayloadTooLarge(
                    f"result is {size} bytes as JSON; at most {RESULT_MAX_BYTES} are kept")
        retry = body.get("retry", True)
        if not isinstance(retry, bool):
            raise PayloadError("retry must be true or false")
        if not retry and state != FAILED:
            raise PayloadError("retry: false goes only with state failed")
        return cls(
            job_id=job_id.lower(),
            progress=int(progress),
            state=state,
            message=_text_field(body, "message", MESSAGE_MAX),
            stage=_text_field(body, "stage", STAGE_MAX),
            seq=seq,
            current=current,
            total=total,
            result=result,
            log=_log_lines(body),
            retry=retry,
        )


def browser_contract(more_events: dict[str, str] | None = None) -> dict[str, Any]:
    """The names the page scripts use, rendered into every page as JSON.

    The scripts read events and states from here (``window.JobcastProtocol``
    after ``protocol.js``), so they cannot drift from the server's names;
    ``more_events`` are those a feature adds (the highlighter's ``highlight``).
    """
    return {
        "events": {
            **(more_events or {}),
            "updateProgress": UPDATE_PROGRESS, "subscribe": SUBSCRIBE,
            "jobLog": JOB_LOG, "batchProgress": BATCH_PROGRESS,
            "jobChanged": DASHBOARD_UPDATE, "watchDashboard": DASHBOARD_SUBSCRIBE,
        },
        "states": {name: name for name in STATES},
        "terminal": sorted(TERMINAL_STATES),
        "cancellable": sorted(CANCELLABLE_STATES),
        "retryable": sorted(RETRYABLE_STATES),
        "logStart": LOG_START,
        "watchQuery": WATCH_QUERY,
    }
