"""Closed-loop callback loads compared on one web process with clients watching."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.stack import BenchStack, measured_load, settle
from bench.swarm import Swarm

WATCHERS = 100


def compare(stack: BenchStack, duration: float, variants: dict[str, dict[str, Any]],
            log: Callable[[str], None], rounds: int = 1) -> dict[str, dict]:
    """Each variant's :func:`measured_load` on web A, against jobs ``WATCHERS``
    clients watch; ``variants`` maps a name to ``measured_load`` keyword arguments
    (``concurrency`` defaults to 32). With ``rounds`` > 1 the variants take turns,
    ``duration / rounds`` seconds each time, and each variant's turns are added up:
    a machine whose speed drifts during the comparison then drifts under all of
    them alike, instead of under whichever ran last."""
    web = stack.a
    watched = stack.create_jobs(WATCHERS)
    turns: dict[str, list[dict]] = {name: [] for name in variants}
    with Swarm("127.0.0.1", web.port) as swarm:
        swarm.connect(WATCHERS, watched)
        settle(0.5)
        for _ in range(rounds):
            for name, options in variants.items():
                options = {"concurrency": 32, **options}
                concurrency = options.pop("concurrency")
                turns[name].append(measured_load(web, "/api/progress", duration / rounds,
                                                 concurrency, jobs=watched, tag=name,
                                                 **options))
                settle(0.5)
    results = {name: combined(got) for name, got in turns.items()}
    for name, result in results.items():
        log(f"  {name}: {result}")
    return results


def combined(turns: list[dict]) -> dict:
    """Several :func:`measured_load` results of one variant as one: requests, time,
    statuses and server CPU added up (latency percentiles: the worst turn's)."""
    if len(turns) == 1:
        return turns[0]
    requests = sum(t["requests"] for t in turns)
    seconds = sum(t["seconds"] for t in turns)
    cpu = sum(t["server_cpu"] * t["seconds"] for t in turns)
    statuses: dict[str, int] = {}
    for turn in turns:
        for status, count in turn["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    out = dict(turns[-1], requests=requests, seconds=seconds, statuses=statuses,
               rate=requests / seconds if seconds else 0.0,
               server_cpu=cpu / seconds if seconds else 0.0,
               cpu_us=1e6 * cpu / max(1, requests), turns=len(turns))
    for key in ("p50_ms", "p99_ms"):
        if all(key in t for t in turns):
            out[key] = max(t[key] for t in turns)
    return out


def all_answered(result: dict, status: str) -> bool:
    """True when every request of ``result`` was answered ``status``."""
    return bool(result["statuses"].get(status, 0) == result["requests"])
