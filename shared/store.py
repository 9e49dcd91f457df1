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

import random
import time
from typing import Any

import redis
from redis.connection import AbstractConnection

from shared import history, keys, scripts
from shared.coalesce import OwnConnection, ReportCoalescer
from shared.joblog import LogBatch, LogLine
from shared.jobstate import (
    CANCEL_ACKNOWLEDGED,
    Applied,
    InvalidTransition,
    JobState,
    LeaseRevoked,
    StaleAttempt,
    UnknownJob,
    UpdateAnswer,
)
from shared.kinds.policy import BACKOFF_CAP, EXPONENTIAL
from shared.protocol import (
    CANCELLED,
    FAILED,
    LOG_START,
    QUEUED,
    RUNNING,
    SCHEDULED,
    SUCCEEDED,
    TERMINAL_STATES,
    ProgressUpdate,
)
from shared.quotas import LUA_FIELDS as QUOTA_FIELDS

__all__ = ["Applied", "InvalidTransition", "JobState", "JobStore", "LeaseRevoked",
           "StaleAttempt", "UnknownJob", "UpdateAnswer"]

MAX_STORED = 100_000  # default MAX_STORED_JOBS: the recent-jobs index never lists more
TIMELINE_MAX = 100  # the newest states a job's timeline keeps
TERMINAL_SET = {state: True for state in sorted(TERMINAL_STATES)}  # a Lua set, once decoded
# The fields of the scripts' JSON argument that shared/lua/lib/transition.lua reads
# (besides now): every script that changes a job's state sends them.
TRANSITION_FIELDS: dict[str, Any] = {
    "state_index": keys.state_index(""), "batch_prefix": keys.BATCH_PREFIX,
    "timeline": keys.job_timeline_key("").removeprefix(keys.job_key("")),
    "timeline_max": TIMELINE_MAX, "terminal": TERMINAL_SET, "running": RUNNING,
    "stall_deadlines": keys.STALL_DEADLINES, "stalled_index": keys.STALLED_INDEX,
    "history": history.LUA_FIELDS,  # a job's end counts in the dashboard's history
}
FAILURES_KEPT = 20  # earlier attempts' errors a job keeps (its hash's failures)
# The fields shared/lua/lib/retry.lua reads (besides now): a failed attempt of a job whose
# kind retries is scheduled for the next one (update_job.lua, sweep_leases.lua).
RETRY_FIELDS: dict[str, Any] = {"scheduled": SCHEDULED, "exponential": EXPONENTIAL,
                                "backoff_cap": BACKOFF_CAP, "failures_max": FAILURES_KEPT}
# (and the quota counters' fields: an applied report counts the bytes it stores)
_UPDATE_FIELDS = {**TRANSITION_FIELDS, **QUOTA_FIELDS, "succeeded": SUCCEEDED,
                  "log_start": LOG_START, "failed": FAILED, **RETRY_FIELDS,
                  "cancelled": CANCELLED, "ack_message": CANCEL_ACKNOWLEDGED}
STALL_BATCH = 500  # stalled jobs marked per script run
_CREATE_FIELDS = {"state_index": keys.state_index(""), "kind_index": keys.kind_index(""),
                  "owner_index": keys.owner_index(""), "batch_index": keys.batch_index(""),
                  "timeline": TRANSITION_FIELDS["timeline"]}


class JobStore:
    """Reads and writes job state in Redis (a client with ``decode_responses=True``)."""

    def __init__(self, client: redis.Redis, ttl: int = 7 * 24 * 3600,
                 max_stored: int = MAX_STORED, log_max: int = 1000,
                 lease_seconds: int = 30, coalesce: bool = False) -> None:
        self.client = client
        # The web process's reports share round trips (on a connection of their own).
        self.coalescer = (ReportCoalescer(OwnConnection(self._run_on, client.connection_pool))
                          if coalesce else None)
        self.lease_seconds = lease_seconds  # an update renews an external job's lease
        self.ttl = ttl
        self.max_stored = max_stored
        self.log_max = log_max
        self._update = scripts.register(client, "update_job")
        self._reset = scripts.register(client, "reset_job")
        self._create = scripts.register(client, "create_job")
        self._queue_retry = scripts.register(client, "queue_retry")
        self._request_cancel = scripts.register(client, "request_cancel")
        self._mark_stalled = scripts.register(client, "mark_stalled")

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
                    keys.job_attempts_key(job_id), keys.job_traceback_key(job_id),
                    keys.job_reruns_key(job_id))
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
              attempt: int | None = None) -> Applied:
        """Apply one progress report atomically: the state it stored (None when it was
        dropped: a duplicate, out of order, or after the job's end) and the name of the
        state the job is in, from the same script run (a worker whose report was dropped
        learns that its job ended).

        Raises :class:`UnknownJob` when the job does not exist, and
        :class:`StaleAttempt` when ``attempt`` (None or 0: any) is not the job's
        current one. With ``coalesce`` (the web process), reports that arrive while
        a round trip is out share the next one (``shared/coalesce.py``).
        """
        stamp = time.time() if now is None else now
        if self.coalescer is not None:
            return self.coalescer.apply(update, attempt, stamp)
        return self._answer(update, scripts.run(self._update,
                                                *self._update_call(update, stamp, attempt)))

    def apply_many(self, updates: list[tuple[ProgressUpdate, int | None]],
                   now: float | None = None) -> list[UpdateAnswer]:
        """:meth:`apply` for each ``(update, attempt)``, in order, in one round trip (each
        still its own atomic script run); each answer is what :meth:`apply` returns, or
        the :class:`UnknownJob` / :class:`StaleAttempt` it would raise."""
        stamp = time.time() if now is None else now
        calls = [(update, attempt, stamp) for update, attempt in updates]
        answers = self._answers(calls, scripts.run_each(self.client, self._update,
                                                        self._update_calls(calls)))
        for answer in answers:
            if isinstance(answer, redis.RedisError):
                raise answer
        return answers  # type: ignore[return-value]

    def _run_on(self, connection: AbstractConnection,
                calls: list[tuple[ProgressUpdate, int | None, float]]
                ) -> list[UpdateAnswer | redis.RedisError]:
        """The coalescer's round trip, on its own connection; connection errors raise."""
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
                answers.append(self._answer(update, raw))
            except (UnknownJob, StaleAttempt, LeaseRevoked) as exc:
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
        if update.state == FAILED:  # its kind may retry it (lib/retry.lua)
            fields["jitter"] = random.random()
            if not update.retry:
                fields["no_retry"] = True
        return ([keys.job_key(update.job_id), keys.job_log_key(update.job_id),
                 keys.EXTERNAL_LEASES], fields)

    @staticmethod
    def _answer(update: ProgressUpdate, raw: list[Any]) -> Applied:
        result = scripts.pairs(raw)
        code = int(result["code"])
        if code == -2:
            raise StaleAttempt(update.job_id, int(result["attempt"]))
        if code == -3:
            raise LeaseRevoked(update.job_id)
        if code < 0:
            raise UnknownJob(update.job_id)
        cancel = str(result.get("cancel_requested") or "")
        if code == 0:  # asked to stop: only while it runs
            return Applied(None, str(result["state"]), bool(cancel) and result["state"] == RUNNING)
        extra = {name: str(result[name]) for name in ("current", "total", "result",
                                                      "owner", "batch_id") if result.get(name)}
        if int(result.get("batch_done") or 0):
            extra["batch_done"] = "1"  # this change ended the batch's last child
        if result.get("retry_at"):  # a failed attempt, retried (lib/retry.lua)
            extra.update({name: str(result[name]) for name in
                          ("retry_at", "attempt", "max_attempts", "failures")})
        if cancel:
            extra["cancel_requested"] = cancel
        ids = [str(i) for i in result.get("log_ids") or []]
        batch = (LogBatch(update.job_id, str(result["log_after"]),
                          tuple(LogLine(i, text) for i, text in zip(ids, update.log, strict=True)))
                 if ids else None)
        applied = JobState(job_id=update.job_id, state=result["state"],
                           progress=int(result["progress"]), message=result["message"],
                           stage=result["stage"], kind=result["kind"] or "demo",
                           created_at=float(result.get("created_at") or 0),
                           extra=extra, log=batch)
        return Applied(applied, applied.state, bool(cancel) and applied.state == RUNNING)

    def finish(self, job_id: str, state: str, message: str = "") -> JobState | None:
        """Move a job to a terminal state unless it already has one (``failed`` is
        final here: its kind's retries do not apply)."""
        progress = 100 if state == SUCCEEDED else 0
        return self.apply(ProgressUpdate(job_id=job_id, progress=progress, state=state,
                                         message=message, retry=False)).state

    def queue_retry(self, job_id: str, attempt: int) -> JobState | None:
        """Queue a job scheduled for its next ``attempt`` (a retry that is due),
        atomically; its new state, or None when it is not (any longer) waiting for that
        attempt (cancelled meanwhile, unknown, expired)."""
        result = scripts.pairs(scripts.run(self._queue_retry, [keys.job_key(job_id)], {
            "id": job_id, "attempt": attempt, "now": repr(time.time()),
            "scheduled": SCHEDULED, "queued": QUEUED, **TRANSITION_FIELDS}))
        return self.get(job_id) if int(result["code"]) == 1 else None

    def request_cancel(self, job_id: str, grace: float, now: float | None = None
                       ) -> str | None:
        """Ask a running job to stop within ``grace`` seconds (``request_cancel.lua``):
        None when it was asked (now or before), else the state it is in (not running:
        cancel it at once). Raises :class:`UnknownJob`."""
        result = scripts.pairs(scripts.run(
            self._request_cancel, [keys.job_key(job_id), keys.CANCEL_DEADLINES],
            {"id": job_id, "now": repr(time.time() if now is None else now), "grace": grace,
             "running": RUNNING}))
        code = int(result["code"])
        if code < 0:
            raise UnknownJob(job_id)
        return str(result["state"]) if code == 0 else None

    def mark_stalled(self, now: float | None = None) -> list[str]:
        """Mark the running jobs whose stall deadline has passed as stalled
        (``mark_stalled.lua``); their ids."""
        found = scripts.run(self._mark_stalled, [keys.STALL_DEADLINES, keys.STALLED_INDEX],
                            {"now": repr(time.time() if now is None else now),
                             "limit": STALL_BATCH, "job_prefix": keys.JOB_KEY_PREFIX,
                             "running": RUNNING})
        return [str(job_id) for job_id in found or []]

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
