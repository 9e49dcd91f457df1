"""Cancel that is acknowledged, then enforced; and stalled jobs (#27, sections 8 and 9).

**Cancel.** A cancel of a running job does not end it at once: the store notes
``cancel_requested`` (``shared/lua/request_cancel.lua``) and the page shows
"stopping…" (``cancelRequested`` in the payload). The worker learns it from the
answer to its next report (``X-Jobcast-Cancel-Requested: 1``, or
``cancelRequested`` in a batch's result) or heartbeat (``cancelRequested`` per
job); a job function sees it through its context (``ctx.cancelled``,
``ctx.check_cancelled()``, or its next ``progress``/``log`` raising
:class:`shared.kinds.CancelRequested`). It stops and reports ``cancelled``, which
stores "cancelled on request; the worker stopped". A job that has not ended
``CANCEL_GRACE`` seconds after the request is stopped by force
(:func:`enforce_cancels`): RQ's stop-job command kills its work horse, or an
external job's lease is revoked (its attempt's reports answer 409 and its
heartbeats ``held: false``); it ends ``cancelled`` with a message saying which.
A scheduled, queued or waiting job is still cancelled at once (``Lifecycle.cancel``).

**Stalls.** A running job reports; a heartbeat is no report. The store keeps, for
every running job, the time by which it must report again (its last applied
report, or its start, plus its ``stall_after``: the kind's, else ``STALL_AFTER``,
stored on the job when it starts) in one sorted set, moved by every applied report
in the same script run (``update_job.lua``, ``lib/transition.lua``). So finding
the stalled jobs reads only the due head of that set (``mark_stalled.lua``), never
every running job. A stalled job gets ``stalled`` (the payload's ``stalled`` and
``lastReportAt``; "no report for 6 min" on its page), joins the stalled index (the
finder's ``stalled`` filter, ``/metrics``' ``jobcast_jobs_stalled``) and is
pushed; its next report clears it. A kind with ``stall_fails=True`` has a stalled
attempt failed instead (stopped as a forced cancel is), so its retries apply.

**Where the timers live.** No thread of the site's: :func:`tick` runs in the tick
process (``python -m worker.cron``, the Procfile's ``cron``) every second, beside
the recurring schedules. A deadline set read from its head costs one
``ZRANGEBYSCORE`` per tick when nothing is due. RQ's scheduler (``enqueue_in`` of
an enforcer) was the other way, and was not taken: its enforcer would wait on the
job's own queue behind the very jobs it must stop when every worker is busy, and
external jobs have no RQ job at all. Several tick processes may run: each due
entry is taken by one (``ZREM``), and each stall marked once (one script run).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import redis

from shared import keys
from shared.kinds import JobKind
from shared.protocol import CANCELLED, FAILED
from shared.store import JobState, JobStore

log = logging.getLogger(__name__)
ENFORCE_BATCH = 100  # due cancels enforced per tick (the rest on the next)


class WatchedJobs(Protocol):
    """What the watch uses of a lifecycle (:class:`shared.lifecycle.Lifecycle` is one):
    its settings, Redis, store and kinds, and how it reads, stops and reacts."""

    @property
    def cfg(self) -> Any: ...  # the lifecycle's Config

    @property
    def client(self) -> redis.Redis: ...

    @property
    def store(self) -> JobStore: ...

    @property
    def kinds(self) -> Mapping[str, JobKind]: ...

    def current(self, job_id: str) -> JobState: ...

    def stop_in_rq(self, job_id: str) -> None: ...

    def changed(self, states: Iterable[JobState], at: float | None = None,
                created: bool = False) -> None: ...


def watch_fields(stall_after: float | None, default: float) -> dict[str, str]:
    """The field a new job stores for the stall watch: its ``stall_after`` (the kind's,
    else ``default``, ``STALL_AFTER``); none when that is 0 (never stalls)."""
    seconds = stall_after if stall_after is not None else default
    return {"stall_after": repr(float(seconds))} if seconds > 0 else {}


def ask_to_stop(jobs: WatchedJobs, job: JobState) -> JobState | None:
    """Ask a running job to stop within ``CANCEL_GRACE`` seconds; its state, with
    ``cancel_requested`` (pushed: "stopping…"). None when it no longer runs (the
    caller cancels it at once) or when the grace is 0 (stopped by force at once)."""
    grace = float(jobs.cfg.CANCEL_GRACE)
    if grace <= 0 or jobs.store.request_cancel(job.job_id, grace) is not None:
        return None
    state = jobs.current(job.job_id)
    log.info("job %s asked to stop (within %g s)", job.job_id, grace)
    jobs.changed([state])
    return state


def force_stop(jobs: WatchedJobs, job: JobState, message: str, end: str = CANCELLED
               ) -> JobState | None:
    """End a running job as ``end`` with ``message``, and stop its worker: RQ's
    stop-job command kills its work horse, or an external job's lease is revoked
    (that attempt's reports then answer 409). The ended state (pushed), or None when
    it had ended meanwhile."""
    external = job.extra.get("external") == "1"
    if external:  # before the end: the worker's next report is refused, not dropped
        jobs.client.hset(keys.job_key(job.job_id), "lease_revoked", str(job.attempt))
    ended = jobs.store.finish(job.job_id, end, message)
    if ended is None:
        return None
    if not external:
        jobs.stop_in_rq(job.job_id)
    log.info("job %s stopped by force (%s): %s", job.job_id, end, message)
    jobs.changed([ended])
    return ended


def enforce_cancels(jobs: WatchedJobs, now: float | None = None) -> list[str]:
    """Stop by force the jobs asked to stop whose grace has passed and that still run;
    their ids."""
    stamp = time.time() if now is None else now
    due: list[tuple[str, float]] = jobs.client.zrangebyscore(  # type: ignore[assignment]
        keys.CANCEL_DEADLINES, "-inf", stamp, start=0, num=ENFORCE_BATCH, withscores=True)
    stopped = []
    for job_id, deadline in due:
        if not jobs.client.zrem(keys.CANCEL_DEADLINES, job_id):
            continue  # another tick process took it
        job = jobs.store.get(str(job_id))
        asked = job.extra.get("cancel_requested") if job is not None else None
        if job is None or job.finished or not asked:
            continue  # it stopped in time (or was retried since)
        how = ("its lease was revoked" if job.extra.get("external") == "1"
               else "its work horse was killed")
        grace = round(float(deadline) - float(asked), 1)
        if force_stop(jobs, job, f"cancelled on request; stopped by force after {grace:g} s "
                                 f"(the worker did not stop: {how})") is not None:
            stopped.append(job.job_id)
    return stopped


def for_words(seconds: float) -> str:
    """``seconds`` as the page says it: "45 s", "6 min", "2 h"."""
    if seconds < 120:
        return f"{max(0, round(seconds))} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"


def mark_stalls(jobs: WatchedJobs, now: float | None = None) -> list[str]:
    """Mark the running jobs that have not reported within their ``stall_after`` as
    stalled, and push them; a kind with ``stall_fails`` has the attempt failed
    instead. The ids marked."""
    stamp = time.time() if now is None else now
    ids = jobs.store.mark_stalled(stamp)
    states = [state for state in jobs.store.get_many(ids) if state is not None]
    shown: list[JobState] = []
    for state in states:
        kind = jobs.kinds.get(state.kind)
        silent = for_words(stamp - (state.last_report_at or stamp))
        if kind is not None and kind.policy.stall_fails:
            force_stop(jobs, state, f"stalled: no report for {silent}; the attempt failed "
                                    "(its kind fails stalled attempts)", FAILED)
        else:
            log.info("job %s stalled: no report for %s", state.job_id, silent)
            shown.append(state)
    jobs.changed(shown)
    return ids


def tick(jobs: WatchedJobs, now: float | None = None) -> tuple[list[str], list[str]]:
    """One round of the watch (the tick process runs it every second): the ids of the
    jobs stopped by force, and of those found stalled."""
    stamp = time.time() if now is None else now
    return enforce_cancels(jobs, stamp), mark_stalls(jobs, stamp)


def stalled_count(client: redis.Redis) -> int:
    """How many running jobs are stalled now (``/metrics``)."""
    return int(client.zcard(keys.STALLED_INDEX))  # type: ignore[arg-type]
