"""A job's live log: lines stored in a Redis stream, pushed as ``jobLog`` batches.

Every line has an id (the stream id, ``"<ms>-<n>"``, increasing), the time it
was stored and its text. Each pushed batch names the id of the line just
before it (``after``), so a client can tell a batch that follows what it has
from one that arrived early (its own replay still on the way) or late (lines
it already has). :class:`LogFollower` keeps exactly that bookkeeping; the job
page's console does the same in JavaScript.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from shared import keys
from shared.protocol import JOB_LOG, LOG_START, iso_time, room_for


def id_key(log_id: str) -> tuple[int, int]:
    """A log id as a sortable pair; ``ValueError`` for anything else."""
    ms, _, n = log_id.partition("-")
    return int(ms), int(n or 0)


def is_log_id(value: object) -> bool:
    """True for a well-formed log id (``"<ms>-<n>"`` or ``"0"``)."""
    if not isinstance(value, str) or len(value) > 40:
        return False
    try:
        ms, n = id_key(value)
    except ValueError:
        return False
    return 0 <= ms < 2**64 and 0 <= n < 2**64  # what Redis takes as a stream id


@dataclass(frozen=True)
class LogLine:
    """One line of a job's log."""

    id: str
    text: str

    @property
    def at(self) -> float:
        """When it was stored, epoch seconds (from the id)."""
        return id_key(self.id)[0] / 1000

    def to_json(self) -> dict[str, Any]:
        """``{"id", "at", "text"}`` as pushed and served (``at``: ISO 8601 UTC)."""
        return {"id": self.id, "at": iso_time(self.at), "text": self.text}

    def wire_bytes(self) -> int:
        """About the bytes it takes in a ``jobLog`` payload (its text's UTF-8, its
        id, and the rest of its JSON)."""
        return len(self.text.encode("utf-8", "replace")) + len(self.id) + LINE_OVERHEAD


LINE_OVERHEAD = 50  # a line's JSON besides its text and id: "at" and the punctuation


@dataclass(frozen=True)
class LogBatch:
    """Lines appended together, and the id of the line before them. ``more`` marks
    a replay cut short (:meth:`cut`): lines after the last one are not in it."""

    job_id: str
    after: str
    lines: tuple[LogLine, ...]
    more: bool = False

    def to_payload(self) -> dict[str, Any]:
        """The ``jobLog`` event payload (with ``more: true`` when cut short)."""
        payload: dict[str, Any] = {"jobId": self.job_id, "after": self.after,
                                   "lines": [line.to_json() for line in self.lines]}
        if self.more:
            payload["more"] = True
        return payload

    def wire_bytes(self) -> int:
        """About the bytes its lines take in a payload."""
        return sum(line.wire_bytes() for line in self.lines)

    def cut(self, max_bytes: int) -> LogBatch:
        """The first lines that fit in ``max_bytes`` (:meth:`LogLine.wire_bytes`), marked
        ``more`` when some were left out; the batch itself when all fit."""
        used = 0
        for count, line in enumerate(self.lines):
            used += line.wire_bytes()
            if used > max_bytes:
                return LogBatch(self.job_id, self.after, self.lines[:count], more=True)
        return self

    def event(self) -> tuple[str, dict[str, Any], str]:
        """``(event, payload, room)`` for this batch."""
        return JOB_LOG, self.to_payload(), room_for(self.job_id)


def read_log(client: redis.Redis, job_id: str, after: str = LOG_START,
             limit: int = 1000) -> LogBatch:
    """Up to ``limit`` lines stored after ``after``, oldest first."""
    start = "-" if id_key(after) == (0, 0) else "(" + after
    entries: list[tuple[Any, dict[Any, Any]]] = client.xrange(  # type: ignore[assignment]
        keys.job_log_key(job_id), min=start, max="+", count=max(1, limit))
    lines = tuple(LogLine(_text(entry_id), _text(data.get("text", data.get(b"text", ""))))
                  for entry_id, data in entries)
    return LogBatch(job_id, after, lines)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass
class LogFollower:
    """Puts ``jobLog`` batches together into one gapless, duplicate-free log.

    ``last`` is the id of the last line taken. A batch whose ``after`` is at or
    before ``last`` is taken (its lines past ``last``); one that starts past
    ``last`` waits in ``pending`` until the lines before it arrive.
    """

    last: str = LOG_START
    lines: list[LogLine] = field(default_factory=list)
    pending: dict[str, Sequence[dict[str, Any]]] = field(default_factory=dict)

    def feed(self, payload: dict[str, Any]) -> list[LogLine]:
        """Take one ``jobLog`` payload; the lines newly in order because of it."""
        self.pending[str(payload.get("after", LOG_START))] = payload.get("lines") or []
        taken: list[LogLine] = []
        progressed = True
        while progressed:
            progressed = False
            for after in list(self.pending):
                if id_key(after) <= id_key(self.last):
                    batch = self.pending.pop(after)
                    for raw in batch:
                        line = LogLine(str(raw["id"]), str(raw["text"]))
                        if id_key(line.id) > id_key(self.last):
                            taken.append(line)
                            self.last = line.id
                    progressed = True
        self.lines.extend(taken)
        return taken

    @property
    def waiting(self) -> bool:
        """True while a batch waits for lines before it."""
        return bool(self.pending)
