"""Kinds with flow control, for tests/test_flow_after.py and test_flow_unique.py
(named in their JOB_KINDS)."""

from __future__ import annotations

import time

from shared.kinds import Context, external_kind, job_kind
from tests.support import simulate_work

STEP_ARGS = {"type": "object", "properties": {"n": {"type": "integer", "default": 0}}}


@job_kind("flow_step", title="Flow step", description="Returns its n at once.", args=STEP_ARGS)
def flow_step(ctx: Context, n: int = 0) -> dict[str, int]:
    """Return at once."""
    return {"n": n}


@job_kind("flow_anyway", title="Runs anyway", after_failure="run", args=STEP_ARGS,
          description="Runs after the jobs it waits for, even when one failed.")
def flow_anyway(ctx: Context, n: int = 0) -> dict[str, int]:
    """Return at once."""
    return {"n": n}


@job_kind("flow_sync", title="Sync an account", unique=["account"],
          description="One sync per account at a time.",
          args={"type": "object", "required": ["account"], "properties": {
              "account": {"type": "string", "minLength": 1, "maxLength": 40},
              "seconds": {"type": "number", "minimum": 0, "maximum": 30, "default": 0},
              "note": {"type": "string", "default": ""}}})
def flow_sync(ctx: Context, account: str, seconds: float = 0, note: str = "") -> dict[str, str]:
    """Take ``seconds``, reporting every 0.1 s."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        ctx.progress(0, message=f"syncing {account}")
        simulate_work(0.1)
    return {"account": account}


FLOW_EXT = external_kind("flow_ext", module=__name__, title="External, one per account",
                         unique=["account"],
                         args={"type": "object", "properties": {"account": {"type": "string"}}})
