"""When a submitted job should run: ``runAt`` (ISO 8601 with a zone) or ``delaySeconds``.

A job with either is stored as ``scheduled`` and handed to RQ's scheduler
(``Queue.enqueue_at``; the worker runs the scheduler), which queues it at
its time. The time must be in the future and within ``JOB_TTL`` (the job's
record would expire before it ran); anything else is a 400 naming the field.
RQ's scheduler keeps whole seconds (it scores a job by its time without the
fraction), so a time is rounded up to the next whole second: the time stored
and shown is the one RQ honours, and a job never starts before it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from website.jobs.submit import Rejected


def read_run_at(body: dict[str, Any], horizon: int, now: datetime | None = None) -> datetime | None:
    """The UTC time to run at, None to run now; :class:`Rejected` for a bad value."""
    now = now or datetime.now(UTC)
    run_at, delay = body.get("runAt"), body.get("delaySeconds")
    if run_at is not None and delay is not None:
        raise Rejected(400, "give runAt or delaySeconds, not both", {"runAt": "not with delaySeconds"})
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 < delay <= horizon:
            raise Rejected(400, f"delaySeconds must be a number of seconds from 1 to {horizon}",
                           {"delaySeconds": f"must be from 1 to {horizon}"})
        return whole_second(now + timedelta(seconds=delay))
    if run_at is None:
        return None
    if not isinstance(run_at, str):
        raise Rejected(400, "runAt must be an ISO 8601 time with a zone",
                       {"runAt": "must be a string"})
    try:
        when = datetime.fromisoformat(run_at.strip())
    except ValueError:
        raise Rejected(400, f"runAt is not an ISO 8601 time: {run_at[:40]!r}",
                       {"runAt": "is not an ISO 8601 time"}) from None
    if when.tzinfo is None:
        raise Rejected(400, "runAt needs a zone, e.g. 2030-01-01T09:00:00+01:00 or ...Z",
                       {"runAt": "needs a zone"})
    when = when.astimezone(UTC)
    if when <= now:
        raise Rejected(400, "runAt is in the past", {"runAt": "is in the past"})
    if when - now > timedelta(seconds=horizon):
        raise Rejected(400, f"runAt is more than {horizon} seconds ahead (JOB_TTL)",
                       {"runAt": "is too far ahead"})
    return whole_second(when)


def whole_second(when: datetime) -> datetime:
    """``when`` rounded up to the next whole second (unchanged when it is one)."""
    return datetime.fromtimestamp(math.ceil(when.timestamp()), UTC)
