"""Closed-loop callback loads compared on one web process with clients watching."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.stack import BenchStack, measured_load, settle
from bench.swarm import Swarm

WATCHERS = 100


def compare(stack: BenchStack, duration: float, variants: dict[str, dict[str, Any]],
            log: Callable[[str], None]) -> dict[str, dict]:
    """Each variant's :func:`measured_load` on web A, against jobs ``WATCHERS``
    clients watch; ``variants`` maps a name to ``measured_load`` keyword arguments
    (``concurrency`` defaults to 32)."""
    web = stack.a
    watched = stack.create_jobs(WATCHERS)
    results: dict[str, dict] = {}
    with Swarm("127.0.0.1", web.port) as swarm:
        swarm.connect(WATCHERS, watched)
        settle(0.5)
        for name, options in variants.items():
            options = {"concurrency": 32, **options}
            concurrency = options.pop("concurrency")
            results[name] = measured_load(web, "/api/progress", duration, concurrency,
                                          jobs=watched, tag=name, **options)
            settle(0.5)
            log(f"  {name}: {results[name]}")
    return results


def all_answered(result: dict, status: str) -> bool:
    """True when every request of ``result`` was answered ``status``."""
    return bool(result["statuses"].get(status, 0) == result["requests"])
