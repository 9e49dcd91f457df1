"""Job state stored in Redis: one hash per job, updated atomically.

An update is one ``EVALSHA`` of a Lua script that applies the protocol rules
in Redis itself, so that several web processes can accept callbacks for the
same job without a race:

* an unknown (or expired) job is refused;
* a job in a terminal state (succeeded, failed, cancelled) never changes again;
* an update whose ``seq`` is not above the stored one is dropped
  (duplicate or out of order);
* progress never goes back: the stored value is the maximum seen;
* an update that changes nothing is dropped, so nothing is emitted twice.

An applied update also returns the job's ``kind`` and ``snippet_id`` (if any),
so the callback can notify a snippet's room without another read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import redis

from shared import keys
from shared.protocol import QUEUED, SUCCEEDED, TERMINAL_STATES, ProgressUpdate

_UPDATE_LUA = """
local k = KEYS[1]
local cur = redis.call('HMGET', k, 'state', 'progress', 'seq', 'message', 'stage', 'kind',
                       'snippet_id')
if not cur[1] then return {-1} end
if cur[1] == 'succeeded' or cur[1] == 'failed' or cur[1] == 'cancelled' then
  return {0}
end
local seq = ARGV[5]
if seq ~= '' and cur[3] and cur[3] ~= '' and tonumber(seq) <= tonumber(cur[3]) then
  return {0}
end
local progress = tonumber(ARGV[2])
local old = tonumber(cur[2]) or 0
if progress < old then progress = old end
if ARGV[1] == 'succeeded' then progress = 100 end
if ARGV[1] == cur[1] and progress == old and ARGV[3] == (cur[4] or '')
   and ARGV[4] == (cur[5] or '') then
  return {0}
end
local fields = {'state', ARGV[1], 'progress', progress, 'message', ARGV[3],
                'stage', ARGV[4], 'updated_at', ARGV[6]}
if seq ~= '' then
  table.insert(fields, 'seq'); table.insert(fields, seq)
end
if cur[1] == 'queued' then
  table.insert(fields, 'started_at'); table.insert(fields, ARGV[6])
end
if ARGV[1] == 'succeeded' or ARGV[1] == 'failed' or ARGV[1] == 'cancelled' then
  table.insert(fields, 'finished_at'); table.insert(fields, ARGV[6])
end
redis.call('HSET', k, unpack(fields))
return {1, ARGV[1], progress, ARGV[3], ARGV[4], cur[6] or '', cur[7] or ''}
"""


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

    @property
    def finished(self) -> bool:
        """True once the job reached a terminal state."""
        return self.state in TERMINAL_STATES

    def to_payload(self) -> dict[str, Any]:
        """The ``updateProgress`` event payload (also the JSON state)."""
        payload: dict[str, Any] = {
            "jobId": self.job_id,
            "progress": self.progress,
            "state": self.state,
            "message": self.message,
        }
        if self.stage:
            payload["stage"] = self.stage
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


class UnknownJob(LookupError):
    """The job id is not (or no longer) stored."""


class JobStore:
    """Reads and writes job state in Redis (a client with ``decode_responses=True``)."""

    def __init__(self, client: redis.Redis, ttl: int = 7 * 24 * 3600) -> None:
        self.client = client
        self.ttl = ttl
        self._update = client.register_script(_UPDATE_LUA)

    def create(self, job_id: str, kind: str = "demo", **extra: str) -> JobState:
        """Store a new job in state ``queued`` and list it among the recent jobs."""
        now = time.time()
        fields: dict[str, str | int] = {
            "state": QUEUED, "progress": 0, "message": "", "stage": "", "kind": kind,
            "created_at": repr(now), "updated_at": repr(now), **extra,
        }
        pipe = self.client.pipeline()
        pipe.hset(keys.job_key(job_id), mapping=fields)  # type: ignore[arg-type]
        pipe.expire(keys.job_key(job_id), self.ttl)
        pipe.zadd(keys.RECENT_JOBS, {job_id: now})
        pipe.zremrangebyscore(keys.RECENT_JOBS, "-inf", now - self.ttl)
        pipe.execute()
        return JobState(job_id=job_id, kind=kind, created_at=now, updated_at=now,
                        extra={k: str(v) for k, v in extra.items()})

    def get(self, job_id: str) -> JobState | None:
        """The job's state, or None for an unknown or expired id."""
        data: dict[str, str] = self.client.hgetall(keys.job_key(job_id))  # type: ignore[assignment]
        return JobState.from_hash(job_id, data) if data else None

    def apply(self, update: ProgressUpdate, now: float | None = None) -> JobState | None:
        """Apply a progress update atomically.

        Returns the new state when the update was applied, None when it was
        dropped (duplicate, out of order, or the job had already ended).
        Raises :class:`UnknownJob` when the job does not exist.
        """
        stamp = repr(time.time() if now is None else now)
        seq = "" if update.seq is None else str(update.seq)
        result = self._update(
            keys=[keys.job_key(update.job_id)],
            args=[update.state, update.progress, update.message, update.stage, seq, stamp],
        )
        code = int(result[0])
        if code < 0:
            raise UnknownJob(update.job_id)
        if code == 0:
            return None
        state, progress, message, stage = result[1:5]
        kind, snippet_id = (list(result[5:7]) + ["", ""])[:2]
        return JobState(job_id=update.job_id, state=state, progress=int(progress),
                        message=message, stage=stage, kind=kind or "demo",
                        extra={"snippet_id": snippet_id} if snippet_id else {})

    def finish(self, job_id: str, state: str, message: str = "") -> JobState | None:
        """Move a job to a terminal state unless it already has one."""
        progress = 100 if state == SUCCEEDED else 0
        return self.apply(ProgressUpdate(job_id=job_id, progress=progress, state=state,
                                         message=message))
