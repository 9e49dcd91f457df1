"""Job state stored in Redis: one hash per job, updated atomically.

An update is one ``EVALSHA`` of a Lua script (``shared/lua/update_job.lua``)
that applies the protocol rules in Redis itself, so that several web processes
can accept callbacks for the same job without a race:

* an unknown (or expired) job is refused;
* a report for an earlier attempt (the job was retried since) is refused;
* a job in a terminal state (succeeded, failed, cancelled) never changes again;
* an update whose ``seq`` is not above the stored one is dropped
  (duplicate or out of order);
* progress never goes back: the stored value is the maximum seen;
* an update that changes nothing is dropped, so nothing is emitted twice.
* an update that is not refused renews the lease of a claimed external job
  (``lease_seconds`` from now; gone once the job has ended), as a heartbeat does.

An applied update also returns what the reactions to it need (the job's
``kind``, owner, batch, log ids), so they need no second read.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.connection import AbstractConnection

from shared import keys, scripts
from shared.errors import Conflict, NotFound
from shared.joblog import LogBatch, LogLine
from shared.protocol import (
    LOG_START,
    QUEUED,
    SCHEDULED,
    SUCCEEDED,
    TERMINAL_STATES,
    ProgressUpdate,
    iso_time,
)

MAX_STORED = 100_000  # default MAX_STORED_JOBS: the recent-jobs index never lists more
TIMELINE_MAX = 100  # the newest states a job's timeline keeps
TERMINAL_SET = {state: True for state in sorted(TERMINAL_STATES)}  # a Lua set, once decoded
# The fields of the scripts' JSON argument that shared/lua/lib/transition.lua reads
# (besides now): every script that changes a job's state sends them.
TRANSITION_FIELDS: dict[str, Any] = {
    "state_index": keys.state_index(""), "batch_prefix": keys.BATCH_PREFIX,
    "timeline": keys.job_timeline_key("").removeprefix(keys.job_key("")),
    "timeline_max": TIMELINE_MAX, "terminal": TERMINAL_SET,
}
_UPDATE_FIELDS = {**TRANSITION_FIELDS, "succeeded": SUCCEEDED, "log_start": LOG_START}
_CREATE_FIELDS = {"state_index": keys.state_index(""), "kind_index": keys.kind_index(""),
                  "owner_index": keys.owner_index(""), "batch_index": keys.batch_index(""),
                  "timeline": TRANSITION_FIELDS["timeline"]}


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
        job's also says when it will run (``runAt``, ISO 8601 UTC)."""
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
        return payload

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


# What one update came to: (the applied state or None, the state's name), or the
# UnknownJob / StaleAttempt it raised.
UpdateAnswer = tuple[JobState | None, str] | LookupError


class JobStore:
    """Reads and writes job state in Redis (a client with ``decode_responses=True``)."""

    def __init__(self, client: redis.Redis, ttl: int = 7 * 24 * 3600,
                 max_stored: int = MAX_STORED, log_max: int = 1000,
                 lease_seconds: int = 30) -> None:
        self.client = client
        self.lease_seconds = lease_seconds  # an update renews an external job's lease
        self.ttl = ttl
        self.max_stored = max_stored
        self.log_max = log_max
        self._update = scripts.register(client, "update_job")
        self._reset = scripts.register(client, "reset_job")
        self._create = scripts.register(client, "create_job")

    def create(self, job_id: str, kind: str = "demo", owner: str = "",
               initial: str = QUEUED, **extra: str) -> JobState:
        """Store a new job in state ``queued``, atomically listed in the recent
        index (trimmed by age and to ``max_stored`` ids) and in the state, kind
        and owner indexes (``shared/lua/create_job.lua``). ``initial`` is
        ``scheduled`` for a job that waits for its time."""
        stamp = time.time()
        scripts.run(self._create, *self._create_parts(job_id, kind, owner, stamp,
                                                       {**extra, "state": initial}))
        return JobState(job_id=job_id, kind=kind, state=initial, created_at=stamp, updated_at=stamp,
                        extra={"owner": owner, **{k: str(v) for k, v in extra.items()}})

    def create_many(self, jobs: list[tuple[str, str, str, float]], chunk: int = 1000) -> None:
        """Create many ``(job_id, kind, owner, created_at)`` jobs through pipelines
        of the same script (each job still atomic): for loads and tests."""
        for start in range(0, len(jobs), chunk):
            calls = [self._create_parts(job_id, kind, owner, stamp, {})
                     for job_id, kind, owner, stamp in jobs[start:start + chunk]]
            for answer in scripts.run_each(self.client, self._create, calls):
                if isinstance(answer, redis.RedisError):
                    raise answer

    def _create_parts(self, job_id: str, kind: str, owner: str, now: float,
                      extra: dict[str, str]) -> tuple[list[str], dict[str, Any]]:
        """The keys and named fields of one ``create_job.lua`` run."""
        fields: dict[str, str] = {
            "state": QUEUED, "progress": "0", "message": "", "stage": "", "kind": kind,
            "owner": owner, "created_at": repr(now), "updated_at": repr(now),
            **{k: str(v) for k, v in extra.items()},
        }
        return ([keys.job_key(job_id), keys.RECENT_JOBS],
                {"id": job_id, "now": repr(now), "ttl": self.ttl, "max_stored": self.max_stored,
                 "fields": fields, **_CREATE_FIELDS})

    def _create_call(self, job_id: str, kind: str, owner: str, now: float,
                     extra: dict[str, str]) -> dict[str, Any]:
        """One ``create_job.lua`` run as the script's keyword arguments (``keys``, and
        ``args``: its one JSON argument), for ``self._create(**call, client=pipe)``."""
        run_keys, fields = self._create_parts(job_id, kind, owner, now, extra)
        return {"keys": run_keys, "args": [scripts.encode(fields)]}

    def discard(self, job_id: str) -> None:
        """Delete a job and its index entries."""
        found: list[str | None] = self.client.hmget(  # type: ignore[assignment]
            keys.job_key(job_id), ["state", "kind", "owner", "batch_id"])
        state, kind, owner, batch = found
        pipe = self.client.pipeline()
        pipe.delete(keys.job_key(job_id), keys.job_timeline_key(job_id),
                    keys.job_attempts_key(job_id), keys.job_traceback_key(job_id))
        pipe.zrem(keys.RECENT_JOBS, job_id)
        if state:
            pipe.zrem(keys.state_index(state), job_id)
        if kind:
            pipe.zrem(keys.kind_index(kind), job_id)
        if owner:
            pipe.zrem(keys.owner_index(owner), job_id)
        if batch:
            pipe.zrem(keys.batch_index(batch), job_id)
        pipe.execute()

    def get_many(self, job_ids: list[str]) -> list[JobState | None]:
        """:meth:`get` for each id, in order, through one pipeline."""
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(keys.job_key(job_id))
        return [JobState.from_hash(job_id, data) if data else None
                for job_id, data in zip(job_ids, pipe.execute() if job_ids else [], strict=True)]

    def get(self, job_id: str) -> JobState | None:
        """The job's state, or None for an unknown or expired id."""
        data: dict[str, str] = self.client.hgetall(keys.job_key(job_id))  # type: ignore[assignment]
        return JobState.from_hash(job_id, data) if data else None

    def apply(self, update: ProgressUpdate, now: float | None = None,
              attempt: int | None = None) -> JobState | None:
        """Apply a progress update atomically.

        Returns the new state when the update was applied, None when it was
        dropped (duplicate, out of order, or the job had already ended).
        Raises :class:`UnknownJob` when the job does not exist, and
        :class:`StaleAttempt` when ``attempt`` (None or 0: any) is not the
        job's current one.
        """
        return self.apply_or_state(update, now, attempt)[0]

    def apply_or_state(self, update: ProgressUpdate, now: float | None = None,
                       attempt: int | None = None) -> tuple[JobState | None, str]:
        """Like :meth:`apply`, plus the name of the state the job is now in.

        The state name comes from the same script run, so a worker whose update
        was dropped learns (without another round trip) that its job ended.
        """
        stamp = time.time() if now is None else now
        return self._update_result(update, scripts.run(self._update,
                                                       *self._update_call(update, stamp, attempt)))

    def apply_many(self, updates: list[tuple[ProgressUpdate, int | None]],
                   now: float | None = None) -> list[UpdateAnswer]:
        """:meth:`apply_or_state` for each ``(update, attempt)``, in order, through one
        pipeline (one round trip; each update is still its own atomic script run).

        Each answer is what :meth:`apply_or_state` would have returned for that
        update, or the :class:`UnknownJob` / :class:`StaleAttempt` it would have raised.
        """
        stamp = time.time() if now is None else now
        answers = self.apply_each([(update, attempt, stamp) for update, attempt in updates])
        for answer in answers:
            if isinstance(answer, redis.RedisError):
                raise answer
        return answers  # type: ignore[return-value]

    def apply_each(self, calls: list[tuple[ProgressUpdate, int | None, float]]
                   ) -> list[UpdateAnswer | redis.RedisError]:
        """Run ``(update, attempt, now)`` calls in one round trip (:func:`scripts.run_each`).

        Each answer is as in :meth:`apply_many`, or the Redis error of that one
        script run.
        """
        return self._answers(calls, scripts.run_each(self.client, self._update,
                                                     self._update_calls(calls)))

    def apply_on(self, connection: AbstractConnection,
                 calls: list[tuple[ProgressUpdate, int | None, float]]
                 ) -> list[UpdateAnswer | redis.RedisError]:
        """:meth:`apply_each` on a connection the caller holds alone
        (:func:`scripts.run_on`); connection errors are raised."""
        return self._answers(calls, scripts.run_on(connection, self._update,
                                                   self._update_calls(calls)))

    def _update_calls(self, calls: list[tuple[ProgressUpdate, int | None, float]]
                      ) -> list[scripts.Call]:
        return [self._update_call(update, now, attempt) for update, attempt, now in calls]

    def _answers(self, calls: list[tuple[ProgressUpdate, int | None, float]],
                 raws: list[Any]) -> list[UpdateAnswer | redis.RedisError]:
        answers: list[UpdateAnswer | redis.RedisError] = []
        for (update, _attempt, _now), raw in zip(calls, raws, strict=True):
            if isinstance(raw, redis.RedisError):
                answers.append(raw)
                continue
            try:
                answers.append(self._update_result(update, raw))
            except (UnknownJob, StaleAttempt) as exc:
                answers.append(exc)
        return answers

    def _update_call(self, update: ProgressUpdate, now: float,
                     attempt: int | None) -> tuple[list[str], dict[str, Any]]:
        """The keys and named fields of one ``update_job.lua`` run (absent: none)."""
        fields: dict[str, Any] = {
            "id": update.job_id, "state": update.state, "progress": update.progress,
            "message": update.message, "stage": update.stage, "now": repr(now),
            "log_max": self.log_max, "ttl": self.ttl,
            "lease_until": repr(now + self.lease_seconds), **_UPDATE_FIELDS}
        if update.seq is not None:
            fields["seq"] = str(update.seq)
        if update.total is not None:
            fields["current"], fields["total"] = str(update.current or 0), str(update.total)
        if update.has_result:
            fields["result"] = update.result_json()
        if update.log:
            fields["lines"] = update.log
        if attempt:
            fields["attempt"] = attempt
        return ([keys.job_key(update.job_id), keys.job_log_key(update.job_id),
                 keys.EXTERNAL_LEASES], fields)

    @staticmethod
    def _update_result(update: ProgressUpdate,
                       raw: list[Any]) -> tuple[JobState | None, str]:
        result = scripts.pairs(raw)
        code = int(result["code"])
        if code == -2:
            raise StaleAttempt(update.job_id, int(result["attempt"]))
        if code < 0:
            raise UnknownJob(update.job_id)
        if code == 0:
            return None, str(result["state"])
        extra = {name: str(result[name]) for name in ("current", "total", "result",
                                                      "owner", "batch_id") if result.get(name)}
        if int(result.get("batch_done") or 0):
            extra["batch_done"] = "1"  # this change ended the batch's last child
        ids = [str(i) for i in result.get("log_ids") or []]
        batch = (LogBatch(update.job_id, str(result["log_after"]),
                          tuple(LogLine(i, text) for i, text in zip(ids, update.log, strict=True)))
                 if ids else None)
        applied = JobState(job_id=update.job_id, state=result["state"],
                           progress=int(result["progress"]), message=result["message"],
                           stage=result["stage"], kind=result["kind"] or "demo",
                           created_at=float(result.get("created_at") or 0),
                           extra=extra, log=batch)
        return applied, applied.state

    def finish(self, job_id: str, state: str, message: str = "") -> JobState | None:
        """Move a job to a terminal state unless it already has one."""
        progress = 100 if state == SUCCEEDED else 0
        return self.apply(ProgressUpdate(job_id=job_id, progress=progress, state=state,
                                         message=message))

    def reset(self, job_id: str, from_states: frozenset[str] | tuple[str, ...]) -> JobState:
        """Put an ended job back to ``queued`` (a retry), atomically.

        Only from one of ``from_states``; the attempt goes up by one and the
        ``seq`` starts again (a late report of the previous attempt is refused
        by its attempt, :class:`StaleAttempt`). Raises :class:`UnknownJob` or
        :class:`InvalidTransition` (with the job's current state).
        """
        result = scripts.pairs(scripts.run(self._reset, [keys.job_key(job_id)], {
            "id": job_id, "now": repr(time.time()), "ttl": self.ttl, "queued": QUEUED,
            "from_states": {state: True for state in sorted(from_states)},
            **TRANSITION_FIELDS}))
        code = int(result["code"])
        if code < 0:
            raise UnknownJob(job_id)
        if code == 0:
            raise InvalidTransition(job_id, str(result["state"]))
        state = self.get(job_id)
        if state is None:  # expired in between: as good as unknown
            raise UnknownJob(job_id)
        return state

    def recent_count(self) -> int:
        """How many jobs the recent-jobs index lists (some may have expired)."""
        return int(self.client.zcard(keys.RECENT_JOBS))  # type: ignore[arg-type]

    def recent(self, offset: int = 0, limit: int = 25) -> list[JobState]:
        """The newest jobs first, ``limit`` of them from ``offset``; expired ones skipped."""
        if limit <= 0:
            return []
        ids: list[str] = self.client.zrevrange(  # type: ignore[assignment]
            keys.RECENT_JOBS, offset, offset + limit - 1)
        return [state for state in self.get_many(ids) if state is not None]

    def state_counts(self, limit: int) -> dict[str, int]:
        """How many of the ``limit`` most recent jobs are in each state."""
        ids: list[str] = self.client.zrevrange(  # type: ignore[assignment]
            keys.RECENT_JOBS, 0, max(limit, 1) - 1)
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(keys.job_key(job_id), "state")
        counts: dict[str, int] = {}
        for state in pipe.execute() if ids else []:
            if state:
                counts[state] = counts.get(state, 0) + 1
        return counts
