"""Kinds that retry, for tests/test_flow_retries.py, its browser test and the retry bench
(named in their JOB_KINDS)."""

from __future__ import annotations

import os
import signal

from shared.kinds import Context, PermanentFailure, external_kind, job_kind

COUNT = {"type": "object", "properties": {"fails": {"type": "integer", "minimum": 0,
                                                    "default": 1}}}


def _attempt(ctx: Context) -> int:
    return int(ctx.lifecycle.current(ctx.job_id).attempt)


@job_kind("flaky", title="Flaky", retries=3, backoff=[1, 2], args=COUNT,
          description="Fails its first `fails` attempts, then succeeds.")
def flaky(ctx: Context, fails: int = 1) -> dict[str, int]:
    """Fail while this is one of the first ``fails`` attempts."""
    attempt = _attempt(ctx)
    ctx.progress(30, message=f"attempt {attempt}")
    if attempt <= fails:
        raise RuntimeError(f"attempt {attempt} fails on purpose")
    return {"attempt": attempt}


@job_kind("permanent", title="Permanent", retries=3, backoff=[1],
          description="Raises PermanentFailure: never retried.")
def permanent(ctx: Context) -> None:
    """Say the failure would come again."""
    raise PermanentFailure("no such account")


@job_kind("patient", title="Patient", retries=2, backoff=[45], args=COUNT,
          description="Fails its first attempts, then waits 45 s for the next.")
def patient(ctx: Context, fails: int = 1) -> dict[str, int]:
    """Fail while this is one of the first ``fails`` attempts (the page's countdown)."""
    attempt = _attempt(ctx)
    if attempt <= fails:
        raise ValueError(f"the service answered 503 on attempt {attempt}")
    return {"attempt": attempt}


@job_kind("storm", title="Storm", retries=1, backoff=[1],
          description="Fails its first attempt, succeeds on its second (the retry bench).")
def storm(ctx: Context) -> dict[str, int]:
    """Fail on the first attempt only."""
    if _attempt(ctx) == 1:
        raise RuntimeError("the first attempt fails")
    return {"ok": 1}


@job_kind("crashing", title="Crashing", retries=1, backoff=[0],
          description="Its process dies on the first attempt (SIGKILL); the second succeeds.")
def crashing(ctx: Context) -> dict[str, int]:
    """Kill this work horse on the first attempt: RQ reports it, as for the OOM killer."""
    attempt = _attempt(ctx)
    if attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"attempt": attempt}


FLAKY_EXTERNAL = external_kind(
    "flaky_external", module=__name__, title="Flaky external", retries=2, backoff=[1],
    description="Run by a test's external worker; retried twice.", args={"type": "object"})

EXPONENTIAL = external_kind(
    "exponential", module=__name__, title="Exponential", retries=8, backoff="exponential",
    description="Backs off 1, 2, 4… s with full jitter.", args={"type": "object"})
