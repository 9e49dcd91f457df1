"""The wire contract between worker, site and browser, defined once.

Event names, room names, job states, the progress-callback payload and its
validation live here so that the site, the worker and the tests agree.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

# Socket.IO event names.
UPDATE_PROGRESS = "updateProgress"
HIGHLIGHT = "highlight"
SUBSCRIBE = "subscribe"

# Dotted names the site enqueues, so that website/ never imports worker/.
DEMO_JOB = "worker.jobs.demo_job"
HIGHLIGHT_JOB = "worker.highlight.highlight_job"

# Job kinds (the ``kind`` field of a job's hash).
DEMO_KIND = "demo"
HIGHLIGHT_KIND = "highlight"

# Job states.
QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})
# States a worker may report through the callback.
REPORTABLE_STATES = (RUNNING, SUCCEEDED, FAILED, CANCELLED)

MESSAGE_MAX = 500
STAGE_MAX = 80
CALLBACK_MAX_BYTES = 16 * 1024

# Job control: which states a job may be cancelled from, or retried from.
CANCELLABLE_STATES = frozenset({QUEUED, RUNNING})
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


class PayloadError(ValueError):
    """A progress payload that does not follow the contract."""


def room_for(job_id: str) -> str:
    """The Socket.IO room of the connections watching ``job_id``."""
    return f"job:{job_id}"


def snippet_room(snippet_id: str) -> str:
    """The Socket.IO room of the connections watching a snippet."""
    return f"snippet:{snippet_id}"


def is_uuid(value: object) -> bool:
    """True for a canonical UUID string (as produced by ``str(uuid.uuid4())``)."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def new_id() -> str:
    """A fresh random job or snippet id."""
    return str(uuid.uuid4())


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
    """One progress report from a worker (the body of ``POST /api/progress``)."""

    job_id: str
    progress: int
    state: str = RUNNING
    message: str = ""
    stage: str = ""
    seq: int | None = None

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
        return body

    @classmethod
    def from_json(cls, body: object, now: float | None = None) -> ProgressUpdate:
        """Validate a decoded JSON body; raise :class:`PayloadError` with the reason.

        Given ``now`` (epoch seconds), a seq above :func:`seq_limit` is refused.
        """
        if not isinstance(body, dict):
            raise PayloadError("body must be a JSON object")
        missing = [k for k in ("jobId", "progress", "state") if k not in body]
        if missing:
            raise PayloadError(f"missing field(s): {', '.join(missing)}")
        job_id = body["jobId"]
        if not is_uuid(job_id):
            raise PayloadError("jobId must be a UUID string")
        progress = body["progress"]
        if isinstance(progress, bool) or not isinstance(progress, (int, float)):
            raise PayloadError("progress must be a number from 0 to 100")
        if progress != progress or not 0 <= progress <= 100:  # NaN or out of range
            raise PayloadError("progress must be a number from 0 to 100")
        state = body["state"]
        if state not in REPORTABLE_STATES:
            raise PayloadError(f"state must be one of: {', '.join(REPORTABLE_STATES)}")
        message = body.get("message", "")
        if message is None:
            message = ""
        if not isinstance(message, str):
            raise PayloadError("message must be a string")
        stage = body.get("stage", "")
        if stage is None:
            stage = ""
        if not isinstance(stage, str):
            raise PayloadError("stage must be a string")
        seq = body.get("seq")
        if seq is not None and (
            isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**53
        ):
            raise PayloadError("seq must be a non-negative integer")
        if seq is not None and now is not None and seq > seq_limit(now):
            raise PayloadError(
                f"seq is too far ahead: it must be a time in microseconds at most "
                f"{SEQ_MAX_AHEAD_SECONDS} s ahead of the site's clock (or a counter below it)")
        return cls(
            job_id=job_id.lower(),
            progress=int(progress),
            state=state,
            message=message[:MESSAGE_MAX],
            stage=stage[:STAGE_MAX],
            seq=seq,
        )


def browser_contract() -> dict[str, Any]:
    """The names the page scripts use, rendered into every page as JSON.

    The scripts read events and states from here (``window.JobcastProtocol``
    after ``protocol.js``), so they cannot drift from the server's names.
    """
    return {
        "events": {
            "updateProgress": UPDATE_PROGRESS, "highlight": HIGHLIGHT, "subscribe": SUBSCRIBE,
            "jobChanged": DASHBOARD_UPDATE, "watchDashboard": DASHBOARD_SUBSCRIBE,
        },
        "states": {name: name for name in STATES},
        "terminal": sorted(TERMINAL_STATES),
        "cancellable": sorted(CANCELLABLE_STATES),
        "retryable": sorted(RETRYABLE_STATES),
    }
