"""Kinds for the priority, pause and position tests (tests/test_flow_*.py), named in
their stacks' JOB_KINDS. Each job records that it ran on a Redis list of its tag, so
a test reads the order in which the one worker ran them."""

from __future__ import annotations

import time

import redis

from shared.kinds import Context, external_kind, job_kind
from tests.support import simulate_work

ARGS = {"type": "object", "properties": {"tag": {"type": "string", "maxLength": 40},
                                         "n": {"type": "integer", "default": 0}},
        "required": ["tag"]}
GATE_WAIT = 25.0  # seconds a gate job waits for its gate at most


def ran_key(tag: str) -> str:
    """The list of what the jobs of ``tag`` ran, in order ("<kind>:<n>")."""
    return f"test:ran:{tag}"


def gate_key(tag: str) -> str:
    """The key whose existence opens the gate of ``tag``."""
    return f"test:gate:{tag}"


def _record(ctx: Context, kind: str, tag: str, n: int) -> dict[str, int]:
    client = redis.Redis.from_url(ctx.config.REDIS_URL)
    try:
        client.rpush(ran_key(tag), f"{kind}:{n}")
    finally:
        client.close()
    return {"n": n}


@job_kind("gate", title="Gate", args=ARGS, timeout=60,
          description="Holds the worker until the test opens its gate.")
def gate(ctx: Context, tag: str, n: int = 0) -> dict[str, int]:
    """Wait until ``gate_key(tag)`` exists (at most ``GATE_WAIT`` s), then record."""
    ctx.progress(0, message="waiting at the gate")  # running from now on
    client = redis.Redis.from_url(ctx.config.REDIS_URL)
    try:
        deadline = time.monotonic() + GATE_WAIT
        while not client.exists(gate_key(tag)) and time.monotonic() < deadline:
            simulate_work(0.02)
    finally:
        client.close()
    return _record(ctx, "gate", tag, n)


@job_kind("quick", title="Quick", args=ARGS, description="Records that it ran.")
def quick(ctx: Context, tag: str, n: int = 0) -> dict[str, int]:
    """Record that it ran (normal priority: the default)."""
    return _record(ctx, "quick", tag, n)


@job_kind("urgent", title="Urgent", args=ARGS, priority="high",
          description="Records that it ran; high priority by default.")
def urgent(ctx: Context, tag: str, n: int = 0) -> dict[str, int]:
    """Record that it ran."""
    return _record(ctx, "urgent", tag, n)


@job_kind("bulky", title="Bulky", args=ARGS, priority="low",
          description="Records that it ran; low priority by default.")
def bulky(ctx: Context, tag: str, n: int = 0) -> dict[str, int]:
    """Record that it ran."""
    return _record(ctx, "bulky", tag, n)


PAGER = external_kind("pager", module=__name__, title="Pager", priority="high",
                      description="An external kind of high priority by default.",
                      args={"type": "object"})
