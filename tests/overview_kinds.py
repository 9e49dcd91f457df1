"""Kinds for the dashboard overview's tests (tests/test_overview*.py, tests/e2e/
test_dashboard_overview.py), named in their stacks' JOB_KINDS: one that succeeds
and one that fails, both at once (``fail`` says which message)."""

from __future__ import annotations

from shared.kinds import Context, job_kind

ARGS = {"type": "object", "properties": {"n": {"type": "integer", "default": 0}}}


@job_kind("tidy", title="Tidy", args=ARGS, description="Succeeds at once.")
def tidy(ctx: Context, n: int = 0) -> dict[str, int]:
    """Return ``n``."""
    return {"n": n}


@job_kind("broken", title="Broken", args=ARGS, description="Fails at once.")
def broken(ctx: Context, n: int = 0) -> None:
    """Fail, saying which job it was."""
    raise RuntimeError(f"broken on purpose ({n})")
