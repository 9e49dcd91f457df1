"""A job module that cannot be imported: the worker must fail its jobs with the reason."""

from __future__ import annotations

raise RuntimeError("this job module is broken on purpose")


def job(job_id: str) -> None:  # pragma: no cover - never importable
    """Never reached."""
