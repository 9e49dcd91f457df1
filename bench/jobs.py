"""Job functions only the benchmark runs (the worker imports them by dotted name)."""

from __future__ import annotations


def noop_job(*args: object, **kwargs: object) -> str:
    """A job that does nothing: the benchmark's trivial job."""
    return "ok"
