"""The kind of the retry storm (section 11): an external kind that retries once after
1 s (``JOB_KINDS=bench.retry_kinds`` on the web process the storm runs against)."""

from __future__ import annotations

from shared.kinds import external_kind

STORM = external_kind(
    "storm", module=__name__, title="Storm", retries=1, backoff=[1],
    description="The retry bench's jobs: claimed, failed at once, retried after 1 s.",
    args={"type": "object"})
