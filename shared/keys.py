"""Redis key names, defined once for the site, the worker and the tests."""

from __future__ import annotations

PREFIX = "jobcast"
RECENT_JOBS = f"{PREFIX}:jobs:recent"
# Sorted sets of job ids scored by creation time: ``<INDEX_PREFIX>state:<state>``,
# ``kind:<kind>`` and ``owner:<owner>``, kept by the store's Lua scripts.
INDEX_PREFIX = f"{PREFIX}:idx:"


def state_index(state: str) -> str:
    """Ids of the jobs in ``state``, scored by creation time."""
    return f"{INDEX_PREFIX}state:{state}"


def kind_index(kind: str) -> str:
    """Ids of the jobs of ``kind``, scored by creation time."""
    return f"{INDEX_PREFIX}kind:{kind}"


def batch_index(batch_id: str) -> str:
    """Ids of a batch's children, scored by creation time."""
    return f"{INDEX_PREFIX}batch:{batch_id}"


BATCH_PREFIX = f"{PREFIX}:batch:"


def batch_key(batch_id: str) -> str:
    """Hash of a batch: kind, total, done, a count per state, onComplete."""
    return f"{BATCH_PREFIX}{batch_id}"


def owner_index(owner: str) -> str:
    """Ids of the jobs ``owner`` started, scored by creation time."""
    return f"{INDEX_PREFIX}owner:{owner}"


def job_key(job_id: str) -> str:
    """Hash holding a job's current state."""
    return f"{PREFIX}:job:{job_id}"


# Short-lived coordination keys (rate-limit counters, worker leases, locks) live
# apart from the stored data, so that ``jobcast:*`` is exactly what users stored.
VOLATILE_PREFIX = f"{PREFIX}-volatile"


# Prefix of the rate-limit counters (Flask-Limiter's Redis storage adds ``:<key>``).
RATE_LIMIT_PREFIX = f"{VOLATILE_PREFIX}:ratelimit"


# The callback URL the web process announced (shared/siteurl.py): where workers
# without SITE_URL or PROGRESS_URL send their progress reports.
SITE_URL = f"{VOLATILE_PREFIX}:site-url"


# Pub/sub channel: the worker's fallback (site unreachable) publishes the id of
# a job whose state it stored; every web process pushes that state to its
# pages (website/realtime/relay.py). Used when there is no Socket.IO message queue.
STATE_CHANNEL = f"{PREFIX}:state-stored"


def job_log_key(job_id: str) -> str:
    """Stream holding a job's log lines (the newest ``JOB_LOG_MAX``)."""
    return f"{PREFIX}:job:{job_id}:log"


def job_file_key(job_id: str, name: str) -> str:
    """Hash (``data``, ``type``) of a file a job saved for download."""
    return f"{PREFIX}:job:{job_id}:file:{name}"


def job_attempts_key(job_id: str) -> str:
    """List of a job's attempts, one JSON object each (worker, started, finished)."""
    return f"{PREFIX}:job:{job_id}:attempts"


def job_traceback_key(job_id: str) -> str:
    """A failed job's traceback, for operators only (never in public JSON or pages)."""
    return f"{PREFIX}:job:{job_id}:traceback"


def job_timeline_key(job_id: str) -> str:
    """List of "<state> <epoch seconds>" entries: each state the job entered (Lua keeps it)."""
    return f"{job_key(job_id)}:timeline"


# Recurring schedules (shared/schedules.py): one hash each, every id by creation
# time, and the ids of the running (not paused) ones by their next run time.
SCHEDULES = f"{PREFIX}:schedules"
SCHEDULES_DUE = f"{PREFIX}:schedules:due"


def schedule_key(schedule_id: str) -> str:
    """Hash of a recurring schedule (cron, kind, args, paused, next_run, ...)."""
    return f"{PREFIX}:schedule:{schedule_id}"


# External kinds (docs/workers.md): one list of waiting job ids per kind, the
# lease deadlines of claimed jobs (a sorted set, epoch seconds), and the channel
# on which "a job was queued" wakes the claims waiting in every web process.
EXTERNAL_QUEUE_PREFIX = f"{PREFIX}:external:queue:"
EXTERNAL_LEASES = f"{PREFIX}:external:leases"
EXTERNAL_CHANNEL = f"{PREFIX}:external:ready"
JOB_KEY_PREFIX = f"{PREFIX}:job:"


def external_queue_key(kind: str) -> str:
    """List of the ids of an external kind's jobs waiting to be claimed (oldest first)."""
    return f"{EXTERNAL_QUEUE_PREFIX}{kind}"


# Fair share between tenants (shared/fairshare.py): per lane (an RQ queue or an
# external kind's queue) and tenant, the ids admitted to the lane's queue (a set)
# and the ids held back in order (a list); one hash maps each admitted id to its
# "<lane>|<tenant>".
FAIR_PREFIX = f"{PREFIX}:fair:"
FAIR_SLOTS = f"{FAIR_PREFIX}slots"


# Pause (shared/pause.py): the names of the paused kinds (a set), and per kind the
# ids of its RQ jobs held back while it is paused, in order (a list).
PAUSED_KINDS = f"{PREFIX}:pause:kinds"
PAUSE_HELD_PREFIX = f"{PREFIX}:pause:held:"


def pause_held_key(kind: str) -> str:
    """List of the ids of ``kind``'s RQ jobs held back while it is paused (oldest first)."""
    return f"{PAUSE_HELD_PREFIX}{kind}"


def durations_key(kind: str) -> str:
    """List of the run times (seconds) of ``kind``'s latest jobs, newest first
    (shared/position.py: the ``eta`` of queued jobs)."""
    return f"{PREFIX}:durations:{kind}"
