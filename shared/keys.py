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


# Per-owner quota counters (shared/quotas.py): ``<QUOTA_PREFIX><tenant>:<resource>``,
# hashes of amounts by expiry bucket, and ``<QUOTA_PREFIX><tenant>:batch-items``.
QUOTA_PREFIX = f"{VOLATILE_PREFIX}:quota:"


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


def job_upload_key(job_id: str) -> str:
    """Hash of a job's uploads (``arg:<name>``: the text) and who their bytes count
    against (``shared/uploads.py``): kept apart from RQ's job, read by the worker."""
    return f"{PREFIX}:job:{job_id}:upload"


def job_attempts_key(job_id: str) -> str:
    """List of a job's attempts, one JSON object each (worker, started, finished)."""
    return f"{PREFIX}:job:{job_id}:attempts"


def job_reruns_key(job_id: str) -> str:
    """List of the ids of the jobs run again from ``job_id`` with changes (shared/rerun.py)."""
    return f"{PREFIX}:job:{job_id}:reruns"


def job_traceback_key(job_id: str) -> str:
    """A failed job's traceback, for operators only (never in public JSON or pages)."""
    return f"{PREFIX}:job:{job_id}:traceback"


def job_timeline_key(job_id: str) -> str:
    """List of "<state> <epoch seconds>" entries: each state the job entered (Lua keeps it)."""
    return f"{job_key(job_id)}:timeline"


def job_waiters_key(job_id: str) -> str:
    """Set of the ids of the jobs waiting for ``job_id`` to end (``after``, shared/after.py)."""
    return f"{job_key(job_id)}{WAITERS_SUFFIX}"


WAITERS_SUFFIX = ":waiters"
# Unique jobs (shared/unique.py): ``<UNIQUE_PREFIX><kind>:<digest of the key's values>``
# holds the id of the kind's job not yet ended with those values.
UNIQUE_PREFIX = f"{PREFIX}:unique:"


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


# Every queue and worker (shared/fleet.py): the workers seen, by last-seen time
# ("ext:<name>" or "rq:<name>"), a hash per worker (what it holds), and each external
# kind's last claim time. Bounded: old and surplus workers are dropped as others are seen.
FLEET_WORKERS = f"{PREFIX}:fleet:workers"
FLEET_WORKER_PREFIX = f"{PREFIX}:fleet:worker:"
FLEET_KIND_CLAIMS = f"{PREFIX}:fleet:kind-claims"


# Fair share between tenants (shared/fairshare.py): per lane (an RQ queue or an
# external kind's queue) and tenant, the ids admitted to the lane's queue (a set)
# and the ids held back in order (a list); one hash maps each admitted id to its
# "<lane>|<tenant>".
FAIR_PREFIX = f"{PREFIX}:fair:"
FAIR_SLOTS = f"{FAIR_PREFIX}slots"


# Per-key concurrency (shared/concurrency.py): per group ("<kind>|<key value>") the ids
# holding a slot (a set, "<CONC_PREFIX>taken:<group>") and the ids held back in order (a
# list, "<CONC_PREFIX>held:<group>"); one hash maps each id holding a slot to its group,
# one set names the groups that hold jobs back.
CONC_PREFIX = f"{PREFIX}:conc:"
CONC_SLOTS = f"{CONC_PREFIX}slots"
CONC_GROUPS = f"{CONC_PREFIX}groups"
# Cancel and stalls (shared/watch.py): the deadline by which each running job asked to
# stop must have stopped (id -> epoch seconds), the time at which each running job
# becomes stalled unless it reports (id -> epoch seconds, kept by the store's scripts),
# and the stalled jobs, an index scored by creation time (the finder's ``stalled``).
CANCEL_DEADLINES = f"{PREFIX}:cancel:deadlines"
STALL_DEADLINES = f"{PREFIX}:stall:deadlines"
STALLED_INDEX = f"{INDEX_PREFIX}stalled"
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
