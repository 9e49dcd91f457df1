"""What the site knows about a job (:class:`JobState`), and why the store refuses a change.

A job's state is the hash the store keeps (``shared/store.py``); this is its
reading, with the payloads the wire contract builds from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from shared.concurrency import held_by
from shared.errors import Conflict, NotFound
from shared.joblog import LogBatch
from shared.protocol import LOG_START, QUEUED, RUNNING, SCHEDULED, TERMINAL_STATES, iso_time

# The message of a job that ended cancelled after it was asked to stop (shared/watch.py).
CANCEL_ACKNOWLEDGED = "cancelled on request; the worker stopped"


@dataclass(frozen=True)
class JobState:
    """What the site knows about a job."""

    job_id: str
    state: str = QUEUED
    progress: int = 0
    message: str = ""
    stage: str = ""
    kind: str = "demo"
    created_at: float = 0.0
    updated_at: float = 0.0
    extra: dict[str, str] = field(default_factory=dict)
    log: LogBatch | None = None  # lines appended by the update that made this state

    @property
    def finished(self) -> bool:
        """True once the job reached a terminal state."""
        return self.state in TERMINAL_STATES

    def to_payload(self) -> dict[str, Any]:
        """The ``updateProgress`` event payload (also the JSON state); a scheduled
        job's also says when it will run (``runAt``, ISO 8601 UTC); a job started
        after others names them (``after``) and those not yet succeeded (``waitingFor``)."""
        payload: dict[str, Any] = {
            "jobId": self.job_id,
            "progress": self.progress,
            "state": self.state,
            "message": self.message,
        }
        if self.stage:
            payload["stage"] = self.stage
        if self.total is not None:
            payload["current"] = self.current
            payload["total"] = self.total
        if "result" in self.extra:
            payload["result"] = self.result
        if self.state == SCHEDULED and self.run_at is not None:
            payload["runAt"] = iso_time(self.run_at)
        if self.state == QUEUED and "held_by" in self.extra:  # its concurrency limit holds it
            held = held_by(self.extra["held_by"])
            if held is not None:
                payload["heldBy"] = held
        payload.update(self.retry_payload())
        if self.extra.get("after"):  # the jobs it was started after (shared/after.py)
            payload["after"] = self.extra["after"].split()
            payload["waitingFor"] = self.extra.get("waiting_for", "").split()
        payload.update(self._stopping_payload())
        return payload

    def retry_payload(self) -> dict[str, Any]:
        """A job of a kind that retries: ``attempt`` of ``maxAttempts``; ``retryAt`` (ISO
        8601 UTC) while it waits for its next attempt; ``attempts``, the earlier attempts'
        errors (``[{attempt, error, endedAt}]``, oldest first). A change that does not
        carry them (a plain progress report) leaves them out."""
        payload: dict[str, Any] = {}
        most = self._count("max_attempts")
        if most is not None:
            payload.update(attempt=self.attempt, maxAttempts=most)
        retry_at = self._stamp("retry_at")
        if self.state == SCHEDULED and retry_at is not None:
            payload["retryAt"] = iso_time(retry_at)
        if self.failures:
            payload["attempts"] = self.failures
        return payload

    @property
    def failures(self) -> list[dict[str, Any]]:
        """The earlier attempts' errors: ``{attempt, error, endedAt}`` (ISO 8601), oldest
        first ([] for none)."""
        try:
            kept = json.loads(self.extra.get("failures") or "[]")
        except ValueError:
            return []
        return [{"attempt": int(entry.get("attempt") or 0), "error": str(entry.get("error") or ""),
                 "endedAt": iso_time(float(entry.get("endedAt") or 0))}
                for entry in kept if isinstance(entry, dict)] if isinstance(kept, list) else []

    def _stopping_payload(self) -> dict[str, Any]:
        """A running job's cancel and stall (shared/watch.py): ``cancelRequested`` once it
        was asked to stop; ``stalled`` with ``lastReportAt`` (ISO 8601) while it is stalled."""
        if self.state != RUNNING:
            return {}
        payload: dict[str, Any] = {}
        if self.extra.get("cancel_requested"):
            payload["cancelRequested"] = True
        if self.extra.get("stalled"):
            payload["stalled"] = True
            last = self.last_report_at
            if last is not None:
                payload["lastReportAt"] = iso_time(last)
        return payload

    @property
    def last_report_at(self) -> float | None:
        """When the job last reported a change (epoch seconds), else when it started."""
        return self._stamp("reported_at") or self._stamp("started_at")

    def _count(self, name: str) -> int | None:
        try:
            return int(self.extra[name])
        except (KeyError, ValueError):
            return None

    @property
    def current(self) -> int | None:
        """How many of ``total`` are done, when the job reports "n of total"."""
        return self._count("current")

    @property
    def total(self) -> int | None:
        """The total of "n of total", when the job reports it."""
        return self._count("total")

    @property
    def result(self) -> Any:
        """The job's result (decoded JSON), None when there is none."""
        raw = self.extra.get("result")
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    @property
    def log_last(self) -> str:
        """The id of the newest line of the job's log (``LOG_START`` for none)."""
        return self.extra.get("log_last", LOG_START)

    def _stamp(self, name: str) -> float | None:
        try:
            return float(self.extra[name])
        except (KeyError, ValueError):
            return None

    @property
    def started_at(self) -> float | None:
        """When the worker first reported (epoch seconds), if it did."""
        return self._stamp("started_at")

    @property
    def run_at(self) -> float | None:
        """When a scheduled job is to run (epoch seconds), if it was scheduled."""
        return self._stamp("run_at")

    @property
    def finished_at(self) -> float | None:
        """When the job reached its terminal state (epoch seconds), if it did."""
        return self._stamp("finished_at")

    @property
    def attempt(self) -> int:
        """Which run of the job this is: 1, then one more per retry."""
        try:
            return int(self.extra.get("attempt", "1"))
        except ValueError:
            return 1

    @property
    def owner(self) -> str:
        """Who started the job (a session or API client id; '' when unknown)."""
        return self.extra.get("owner", "")

    def to_dashboard(self, at: float, created: bool = False) -> dict[str, Any]:
        """The compact ``jobChanged`` payload for the dashboard room.

        ``at`` is the time of the change; a ``created`` event also carries
        what a new dashboard row needs (kind, creation time, the page it works for).
        """
        payload: dict[str, Any] = {
            "jobId": self.job_id, "state": self.state, "progress": self.progress,
            "stage": self.stage, "kind": self.kind, "owner": self.owner, "at": round(at, 3),
        }
        if self.created_at:
            payload["createdAt"] = round(self.created_at, 3)
        if created:
            payload["created"] = True
            if self.extra.get("page"):  # a page of its own the job works for
                payload["page"] = self.extra["page"]
                payload["pageText"] = self.extra.get("page_text") or "page"
        return payload

    @classmethod
    def from_hash(cls, job_id: str, data: dict[str, str]) -> JobState:
        """Build from the fields of the job's Redis hash."""
        known = {"state", "progress", "message", "stage", "kind", "created_at", "updated_at"}
        return cls(
            job_id=job_id,
            state=data.get("state", QUEUED),
            progress=int(float(data.get("progress", "0") or 0)),
            message=data.get("message", ""),
            stage=data.get("stage", ""),
            kind=data.get("kind", "demo"),
            created_at=float(data.get("created_at", "0") or 0),
            updated_at=float(data.get("updated_at", "0") or 0),
            extra={k: v for k, v in data.items() if k not in known},
        )


class UnknownJob(NotFound):
    """The job id is not (or no longer) stored."""

    def __init__(self, job_id: str) -> None:
        super().__init__("unknown job id")
        self.job_id = job_id


class StaleAttempt(Conflict, LookupError):
    """The report is for an earlier attempt: the job was retried since."""

    def __init__(self, job_id: str, attempt: int) -> None:
        super().__init__(f"this token is for an earlier attempt; the job is on attempt {attempt}")
        self.job_id = job_id
        self.attempt = attempt


class InvalidTransition(Conflict):
    """The job is not in a state the requested change may start from."""

    def __init__(self, job_id: str, state: str) -> None:
        super().__init__(f"job {job_id} is {state}")
        self.job_id = job_id
        self.state = state


class LeaseRevoked(Conflict):
    """The report is for an attempt whose lease was revoked (a cancel enforced by force)."""

    def __init__(self, job_id: str) -> None:
        super().__init__("this attempt's lease was revoked: the job was cancelled and did "
                         "not stop in time")
        self.job_id = job_id


class Applied(NamedTuple):
    """What one report came to: the state it stored (None: dropped), the name of the
    state the job is in, and whether the job was asked to stop (a cancel requested)."""

    state: JobState | None
    current: str
    cancel_requested: bool = False


# What one report of many came to: what :meth:`JobStore.apply` returns, or the
# UnknownJob / StaleAttempt / LeaseRevoked it raised.
UpdateAnswer = Applied | NotFound | Conflict
