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
