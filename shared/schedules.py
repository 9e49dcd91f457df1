"""Recurring schedules: start a job of a kind on a cron string, pausable.

Operators declare them through the site (``website/ops/schedules.py``); the
tick process (``python -m worker.cron``) fires the due ones. Each schedule
is a hash; the running ones are also in a sorted set by next run time, so a
tick reads only what is due. Claiming a run is one Lua script
(``claim_schedule.lua``) that moves the schedule to its next run only if no
other tick did: each run fires once even with several tick processes. Runs
missed while nothing ticked are not caught up: the next run is counted from
now. Times are UTC.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis
from croniter import CroniterError, croniter

from shared import keys, scripts
from shared.errors import Invalid, NotFound
from shared.protocol import iso_time, new_id


class BadSchedule(Invalid):
    """A cron string that cannot be used (answered with 400)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, {"cron": message})


class UnknownSchedule(NotFound):
    """No schedule with that id."""


def next_run(cron: str, after: float) -> float:
    """The first time the cron string names after ``after`` (epoch seconds, UTC)."""
    return float(croniter(cron, after).get_next(float))


def check_cron(cron: object) -> str:
    """The cron string (five fields), or :class:`BadSchedule` saying what is wrong."""
    if not isinstance(cron, str) or not cron.strip():
        raise BadSchedule("cron must be a cron string such as '*/5 * * * *'")
    text = " ".join(cron.split())
    if len(text.split(" ")) != 5 or len(text) > 100:
        raise BadSchedule("cron takes five fields: minute hour day-of-month month day-of-week")
    if not croniter.is_valid(text):
        raise BadSchedule(f"cron {text!r} is not a valid cron string")
    try:
        next_run(text, time.time())
    except (CroniterError, ValueError) as exc:  # e.g. 31 February never comes
        raise BadSchedule(f"cron {text!r} never fires: {exc}") from None
    return text


@dataclass(frozen=True)
class Schedule:
    """A recurring schedule as stored."""

    schedule_id: str
    cron: str
    kind: str
    args: dict[str, Any]
    paused: bool
    next_run: float | None
    runs: int = 0
    last_job: str = ""

    def to_json(self) -> dict[str, Any]:
        """What ``GET /api/schedules`` lists (``nextRun``: ISO 8601 UTC, null while paused)."""
        upcoming = None if self.paused or self.next_run is None else iso_time(self.next_run)
        return {"id": self.schedule_id, "cron": self.cron, "kind": self.kind, "args": self.args,
                "paused": self.paused, "nextRun": upcoming,
                "runs": self.runs, "lastJob": self.last_job or None}

    @classmethod
    def from_hash(cls, schedule_id: str, data: dict[str, str]) -> Schedule:
        """Build from the schedule's hash."""
        return cls(schedule_id=schedule_id, cron=data.get("cron", ""), kind=data.get("kind", ""),
                   args=json.loads(data.get("args", "{}") or "{}"),
                   paused=data.get("paused") == "1",
                   next_run=float(data["next_run"]) if data.get("next_run") else None,
                   runs=int(data.get("runs", "0") or 0), last_job=data.get("last_job", ""))


class ScheduleStore:
    """Schedules in Redis (a ``decode_responses`` client)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._claim = scripts.register(client, "claim_schedule")

    def create(self, cron: str, kind: str, args: dict[str, Any],
               now: float | None = None) -> Schedule:
        """Store a running schedule; :class:`BadSchedule` for a bad cron string."""
        cron = check_cron(cron)
        stamp = time.time() if now is None else now
        schedule_id = new_id()
        due = next_run(cron, stamp)
        pipe = self.client.pipeline()
        pipe.hset(keys.schedule_key(schedule_id), mapping={
            "cron": cron, "kind": kind, "args": json.dumps(args), "paused": "0",
            "next_run": repr(due), "created_at": repr(stamp), "runs": "0"})
        pipe.zadd(keys.SCHEDULES, {schedule_id: stamp})
        pipe.zadd(keys.SCHEDULES_DUE, {schedule_id: due})
        pipe.execute()
        return Schedule(schedule_id, cron, kind, args, False, due)

    def get(self, schedule_id: str) -> Schedule:
        """The schedule; :class:`UnknownSchedule` when there is none."""
        data: dict[str, str] = self.client.hgetall(keys.schedule_key(schedule_id))  # type: ignore[assignment]
        if not data:
            raise UnknownSchedule("unknown schedule id")
        return Schedule.from_hash(schedule_id, data)

    def all(self, limit: int = 200) -> list[Schedule]:
        """The schedules, oldest first (at most ``limit``)."""
        ids: list[str] = self.client.zrange(keys.SCHEDULES, 0, limit - 1)  # type: ignore[assignment]
        pipe = self.client.pipeline(transaction=False)
        for schedule_id in ids:
            pipe.hgetall(keys.schedule_key(schedule_id))
        return [Schedule.from_hash(i, data) for i, data in zip(ids, pipe.execute(), strict=True)
                if data]

    def pause(self, schedule_id: str) -> Schedule:
        """Stop firing it (no run is due while paused)."""
        self.get(schedule_id)
        pipe = self.client.pipeline()
        pipe.hset(keys.schedule_key(schedule_id), "paused", "1")
        pipe.zrem(keys.SCHEDULES_DUE, schedule_id)
        pipe.execute()
        return self.get(schedule_id)

    def resume(self, schedule_id: str, now: float | None = None) -> Schedule:
        """Fire it again, from its next run after now."""
        schedule = self.get(schedule_id)
        due = next_run(schedule.cron, time.time() if now is None else now)
        pipe = self.client.pipeline()
        pipe.hset(keys.schedule_key(schedule_id), mapping={"paused": "0", "next_run": repr(due)})
        pipe.zadd(keys.SCHEDULES_DUE, {schedule_id: due})
        pipe.execute()
        return self.get(schedule_id)

    def delete(self, schedule_id: str) -> None:
        """Remove it for good."""
        self.get(schedule_id)
        pipe = self.client.pipeline()
        pipe.delete(keys.schedule_key(schedule_id))
        pipe.zrem(keys.SCHEDULES, schedule_id)
        pipe.zrem(keys.SCHEDULES_DUE, schedule_id)
        pipe.execute()

    def claim_due(self, now: float | None = None) -> list[Schedule]:
        """The schedules due by now, each claimed (moved to its next run) by this caller only."""
        stamp = time.time() if now is None else now
        due: list[tuple[str, float]] = self.client.zrangebyscore(  # type: ignore[assignment]
            keys.SCHEDULES_DUE, "-inf", stamp, withscores=True)
        claimed = []
        for schedule_id, score in due:
            try:
                schedule = self.get(schedule_id)
            except UnknownSchedule:
                self.client.zrem(keys.SCHEDULES_DUE, schedule_id)
                continue
            following = next_run(schedule.cron, max(stamp, score))
            if scripts.run(self._claim, [keys.SCHEDULES_DUE, keys.schedule_key(schedule_id)],
                           {"id": schedule_id, "due": repr(score), "next_run": repr(following),
                            "now": repr(stamp)}):
                claimed.append(schedule)
        return claimed

    def note_job(self, schedule_id: str, job_id: str) -> None:
        """Remember the job the last run started."""
        self.client.hset(keys.schedule_key(schedule_id), "last_job", job_id)
