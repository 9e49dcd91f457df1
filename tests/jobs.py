"""Job functions used only by tests; the real worker imports them by dotted name."""

from __future__ import annotations

from shared.config import Config
from worker.boundary import job_boundary, make_reporter


def failing_job(job_id: str, token: str | None = None) -> None:
    """Reports 30%, then raises: must end as ``failed`` with the message."""
    reporter = make_reporter(Config(), token)
    with job_boundary(job_id, reporter):
        reporter.report(job_id, 30, "running", "about to fail")
        raise ValueError("disk on fire")


def noop(*args: object, **kwargs: object) -> str:
    """A job that does nothing and says so (for RQ's own scheduling)."""
    return "ok"


def quiet_job(job_id: str, token: str | None = None) -> None:
    """Does nothing and reports nothing (a cheap job for bulk tests)."""


def wait_for_writer(fifo: str) -> str:
    """Blocks until a writer opens and closes the named pipe ``fifo``; its text."""
    with open(fifo) as pipe:
        return pipe.read()
