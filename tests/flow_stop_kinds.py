"""Kinds for tests/test_flow_cancel.py and tests/test_flow_stall.py (named in their
JOB_KINDS): jobs that heed a cancel or ignore it, and kinds that stall quickly."""

from __future__ import annotations

import time

from shared.kinds import Context, external_kind, job_kind
from tests.support import simulate_work

_HOW = {"type": "object", "additionalProperties": False,
        "properties": {"how": {"type": "string", "enum": ["raise", "return"],
                               "default": "raise"}}}


@job_kind("heeds_cancel", title="Heeds a cancel", timeout=120, args=_HOW,
          description="Runs until asked to stop, checking its context.")
def heeds_cancel(ctx: Context, how: str = "raise") -> dict[str, str]:
    """Report once, then wait for the cancel: ``check_cancelled()`` raises, or the
    function returns once ``ctx.cancelled`` is true."""
    ctx.progress(10, message="waiting to be cancelled")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if how == "raise":
            ctx.check_cancelled()
        elif ctx.cancelled:
            return {"stopped": "on request"}
        simulate_work(0.05)
    return {"stopped": "never asked"}


@job_kind("ignores_cancel", title="Ignores a cancel", timeout=120,
          description="Reports once, then works for a minute without looking.")
def ignores_cancel(ctx: Context) -> dict[str, str]:
    """Report once, then sleep: only the forced stop ends it."""
    ctx.progress(10, message="busy, not listening")
    simulate_work(60)
    return {"stopped": "never"}


@job_kind("quiet_rq", title="Quiet for a while", timeout=120, stall_after=1,
          description="Reports, is silent for 3 s (a stall), then reports and ends.")
def quiet_rq(ctx: Context) -> dict[str, str]:
    """Report, stay silent past ``stall_after``, report again."""
    ctx.progress(10, message="about to go quiet")
    simulate_work(3)
    ctx.progress(90, message="back")
    return {"done": "yes"}


STALLS = external_kind("stalls", module=__name__, title="Stalls",
                       description="An external kind that stalls after 1 s without a report.",
                       stall_after=1)
STALL_FAILS = external_kind("stall_fails", module=__name__, title="Stall fails",
                            description="An external kind whose stalled attempts fail.",
                            stall_after=1, stall_fails=True)
