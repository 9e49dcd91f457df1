"""Redis key names, defined once for the site, the worker and the tests."""

from __future__ import annotations

PREFIX = "jobcast"
RECENT_JOBS = f"{PREFIX}:jobs:recent"
RECENT_SNIPPETS = f"{PREFIX}:snippets:recent"


def job_key(job_id: str) -> str:
    """Hash holding a job's current state."""
    return f"{PREFIX}:job:{job_id}"


def snippet_key(snippet_id: str) -> str:
    """Hash holding a snippet's source and, once done, its highlighted HTML."""
    return f"{PREFIX}:snippet:{snippet_id}"


# Short-lived coordination keys (rate-limit counters, worker leases, locks) live
# apart from the stored data, so that ``jobcast:*`` is exactly what users stored.
VOLATILE_PREFIX = f"{PREFIX}-volatile"


# Prefix of the rate-limit counters (Flask-Limiter's Redis storage adds ``:<key>``).
RATE_LIMIT_PREFIX = f"{VOLATILE_PREFIX}:ratelimit"


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
