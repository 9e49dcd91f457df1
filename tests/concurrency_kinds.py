"""Kinds with a concurrency limit, for tests/test_flow_concurrency.py (named in its JOB_KINDS)."""

from __future__ import annotations

import time

from shared.kinds import Context, external_kind, job_kind
from tests.support import simulate_work

ARGS = {"type": "object", "properties": {"account": {"type": "string", "maxLength": 200},
                                         "hold": {"type": "number", "default": 0.5}},
        "required": ["account"]}


@job_kind("per_account", title="Per account", concurrency={"limit": 1, "key": "account"},
          description="Holds its account for a while: one at a time per account.", args=ARGS)
def per_account(ctx: Context, account: str, hold: float = 0.5) -> dict[str, float]:
    """Wait ``hold`` seconds (until cancelled); when it ran, by the worker's clock."""
    started = time.time()
    ctx.progress(0, 1, f"holding {account}")  # reported: the job shows as running
    deadline = started + hold
    while time.time() < deadline:
        simulate_work(0.02)
    return {"started": started, "finished": time.time()}


EXTERNAL_PER_ACCOUNT = external_kind(
    "ext_per_account", module=__name__, title="External, per account",
    description="Claimed over HTTP, one at a time per account.",
    args=ARGS, concurrency={"limit": 1, "key": "account"})
