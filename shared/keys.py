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


def rate_limit_key(scope: str, client: str, window: int) -> str:
    """Counter of one client's requests in one fixed rate-limit window."""
    return f"{VOLATILE_PREFIX}:ratelimit:{scope}:{client}:{window}"


def worker_lease_key(worker_name: str) -> str:
    """Exists (with a TTL) while the worker of that name is alive."""
    return f"{VOLATILE_PREFIX}:worker-lease:{worker_name}"


def abandoned_check_lock(queue_name: str) -> str:
    """Held by the one worker that looks for abandoned jobs of a queue right now."""
    return f"{VOLATILE_PREFIX}:abandoned-check:{queue_name}"


def job_log_key(job_id: str) -> str:
    """Stream holding a job's log lines (the newest ``JOB_LOG_MAX``)."""
    return f"{PREFIX}:job:{job_id}:log"


def job_file_key(job_id: str, name: str) -> str:
    """Hash (``data``, ``type``) of a file a job saved for download."""
    return f"{PREFIX}:job:{job_id}:file:{name}"
