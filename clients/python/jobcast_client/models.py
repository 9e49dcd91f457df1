"""What the site answers about a job: its state (:class:`Job`) and its log lines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
LOG_START = "0-0"  # the log id before the first line


def log_id_key(log_id: str) -> tuple[int, int]:
    """A log line id (``"<ms>-<n>"``) as a sortable pair."""
    ms, _, n = log_id.partition("-")
    return int(ms), int(n or 0)


@dataclass(frozen=True)
class Job:
    """A job's state as the site showed it (``GET /api/jobs/<id>``, or an
    ``updateProgress`` event of :meth:`Client.watch`); ``raw`` holds every field sent."""

    event: ClassVar[str] = "updateProgress"

    id: str
    state: str
    progress: int = 0
    message: str = ""
    current: int | None = None
    total: int | None = None
    result: Any = None
    control_token: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def ended(self) -> bool:
        """True once the job succeeded, failed or was cancelled."""
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        """True when the job succeeded (its ``result`` is what the worker returned)."""
        return self.state == "succeeded"

    @classmethod
    def from_payload(cls, payload: dict[str, Any], control_token: str | None = None) -> Job:
        """A job from the site's JSON state (``JobState.to_payload``)."""
        return cls(id=str(payload.get("jobId", "")), state=str(payload.get("state", "")),
                   progress=int(payload.get("progress") or 0),
                   message=str(payload.get("message") or ""),
                   current=payload.get("current"), total=payload.get("total"),
                   result=payload.get("result"), control_token=control_token, raw=payload)


@dataclass(frozen=True)
class LogLine:
    """One line of a job's log: its ``id`` (increasing: ``lastLogId`` resumes after it),
    when it was stored (``at``, ISO 8601 UTC) and its ``text``."""

    event: ClassVar[str] = "jobLog"

    id: str
    at: str
    text: str

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LogLine:
        """A line as served and pushed (``{"id", "at", "text"}``)."""
        return cls(str(raw["id"]), str(raw.get("at", "")), str(raw.get("text", "")))


@dataclass
class LogFollower:
    """Puts ``jobLog`` batches together into one gapless log without repeats.

    Each batch names the id of the line before it (``after``). ``last`` is the id of
    the last line taken: a batch whose ``after`` is at or before it is taken (its
    lines past ``last``); one that starts past it waits in ``pending`` until the
    lines before it come (Socket.IO delivers each event on its own thread, so a
    later batch can come first). The same bookkeeping as the site's
    ``shared.joblog.LogFollower`` and the job page's console.
    """

    last: str = LOG_START
    pending: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def feed(self, after: str, lines: list[dict[str, Any]]) -> list[LogLine]:
        """Take one batch; the lines newly in order because of it."""
        self.pending[after] = list(lines)
        taken: list[LogLine] = []
        progressed = True
        while progressed:
            progressed = False
            for start in sorted(self.pending, key=log_id_key):
                if log_id_key(start) > log_id_key(self.last):
                    break
                for raw in self.pending.pop(start):
                    line = LogLine.from_json(raw)
                    if log_id_key(line.id) > log_id_key(self.last):
                        taken.append(line)
                        self.last = line.id
                progressed = True
        return taken

    @property
    def waiting(self) -> bool:
        """True while a batch waits for the lines before it."""
        return bool(self.pending)
