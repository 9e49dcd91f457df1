"""A kind with its own timeout, for tests/test_lifecycle.py (named in its JOB_KINDS)."""

from __future__ import annotations

from shared.kinds import Context, job_kind

TIMED_TIMEOUT = 7  # seconds: not the site's JOB_TIMEOUT


@job_kind("timed", title="Timed", timeout=TIMED_TIMEOUT,
          description="Does nothing, within its own timeout.",
          args={"type": "object", "properties": {"n": {"type": "integer", "default": 0}}})
def timed(ctx: Context, n: int = 0) -> dict[str, int]:
    """Return at once."""
    return {"n": n}
