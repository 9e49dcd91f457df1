"""The dashboard's history: jobs ended per kind and outcome, their durations and the
queue depth, in fixed time buckets in Redis (bounded memory whatever the load).

Written as jobs end, never by scanning jobs: the store's scripts call
``history_end`` in ``shared/lua/lib/transition.lua`` in the same run as the change
that ends a job (every source of an end: reports, cancels, lapsed leases, called-off
dependants), so the history never disagrees with the state indexes. Each end adds
one to ``<outcome>:<kind>`` and to its duration's bin ``d<bin>:<kind>`` in two
hashes: its minute's (``BUCKETS[0]``, kept an hour) and its quarter hour's
(``BUCKETS[1]``, kept a day); ``depth`` keeps each bucket's peak of queued jobs
(``ZCARD`` of the queued state index), sampled at each end and at each tick of
``worker/cron.py`` (``sample_depth``: one short script a second), so a backlog that
grows while nothing ends is seen too.

Durations go in a fixed log-scale histogram: ``BINS_PER_OCTAVE`` bins per doubling
from 1 ms (each bin ~19 % wide), ``BINS`` of them (the last holds everything from
~14 days on), so p50/p95 are read from counts, not kept samples.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from shared import keys, scripts
from shared.protocol import CANCELLED, FAILED, QUEUED, SUCCEEDED

PREFIX = f"{keys.PREFIX}:history:"
TOTALS = f"{PREFIX}totals"  # "<outcome>:<kind>" -> jobs ended since the store began
LAST_FAILURE = f"{PREFIX}last-failure"  # "id:<kind>", "at:<kind>", "message:<kind>"
OUTCOMES = {SUCCEEDED: "s", FAILED: "f", CANCELLED: "c"}
OUTCOME_NAMES = {code: name for name, code in OUTCOMES.items()}
BINS_PER_OCTAVE = 4
BINS = 128  # 2**(128/4) ms: ~50 days; the last bin takes the rest


@dataclass(frozen=True)
class Buckets:
    """One resolution: buckets ``width`` seconds wide, ``count`` of them in a window."""

    name: str  # the window it serves: "1h" or "24h"
    width: int
    count: int

    @property
    def prefix(self) -> str:
        """The key prefix; a bucket's key ends with its start (epoch seconds)."""
        return f"{PREFIX}{self.width}s:"

    @property
    def ttl(self) -> int:
        """Seconds a bucket is kept: its window, its own width, and a minute's slack."""
        return self.width * (self.count + 1) + 60

    def starts(self, now: float) -> list[int]:
        """The starts of the window's buckets, oldest first (the last holds ``now``)."""
        last = int(now) - int(now) % self.width
        return [last - self.width * i for i in range(self.count - 1, -1, -1)]


BUCKETS = (Buckets("1h", 60, 60), Buckets("24h", 900, 96))
WINDOWS = {b.name: b for b in BUCKETS}

# What lib/transition.lua reads (a.history): every script that changes a state sends it.
LUA_FIELDS: dict[str, Any] = {
    "outcome": OUTCOMES, "per_ln": BINS_PER_OCTAVE / math.log(2), "bins": BINS,
    "queued": QUEUED, "failed": FAILED, "totals": TOTALS, "last_failure": LAST_FAILURE,
    "attempts": keys.job_attempts_key("").removeprefix(keys.job_key("")),
    "buckets": [{"prefix": b.prefix, "width": b.width, "ttl": b.ttl} for b in BUCKETS],
}


def bin_seconds(index: int) -> float:
    """A duration bin's middle (geometric), in seconds."""
    return float(2 ** ((index + 0.5) / BINS_PER_OCTAVE) / 1000.0)


def percentile(bins: dict[int, int], fraction: float) -> float | None:
    """The ``fraction`` quantile (0.5, 0.95) of a duration histogram, in seconds
    (the middle of its bin); None when it is empty."""
    total = sum(bins.values())
    if not total:
        return None
    rank = fraction * total
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return round(bin_seconds(index), 3)
    return round(bin_seconds(max(bins)), 3)  # pragma: no cover - rank <= total


@dataclass
class KindHistory:
    """One kind's ends in a window: counts by outcome, the duration histogram."""

    counts: dict[str, int] = field(default_factory=lambda: {name: 0 for name in OUTCOMES})
    bins: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Counts, failure rate (failed of succeeded + failed; None for none) and p50/p95."""
        ok, failed = self.counts[SUCCEEDED], self.counts[FAILED]
        return {**self.counts,
                "failureRate": round(failed / (ok + failed), 4) if ok + failed else None,
                "p50": percentile(self.bins, 0.5), "p95": percentile(self.bins, 0.95)}


@dataclass
class Window:
    """A window's history: a series per bucket and the ends of each kind."""

    buckets: Buckets
    starts: list[int]
    series: dict[str, list[int]]
    kinds: dict[str, KindHistory]


def read_window(client: redis.Redis, window: str, now: float | None = None) -> Window:
    """The window's buckets (``"1h"``: 60 of a minute; ``"24h"``: 96 of 15 minutes), one
    ``HGETALL`` each in one pipeline. Raises KeyError for another window."""
    spec = WINDOWS[window]
    starts = spec.starts(time.time() if now is None else now)
    pipe = client.pipeline(transaction=False)
    for start in starts:
        pipe.hgetall(f"{spec.prefix}{start}")
    series: dict[str, list[int]] = {name: [] for name in (*OUTCOMES, "depth")}
    kinds: dict[str, KindHistory] = {}
    for found in pipe.execute():
        per_outcome = dict.fromkeys(OUTCOMES, 0)
        for name, value in found.items():
            head, _, kind = str(name).partition(":")
            if head == "depth" or not kind:
                continue
            count = int(value)
            entry = kinds.setdefault(kind, KindHistory())
            if head in OUTCOME_NAMES:
                entry.counts[OUTCOME_NAMES[head]] += count
                per_outcome[OUTCOME_NAMES[head]] += count
            elif head.startswith("d") and head[1:].isdigit():
                index = int(head[1:])
                entry.bins[index] = entry.bins.get(index, 0) + count
        for name, count in per_outcome.items():
            series[name].append(count)
        series["depth"].append(int(found.get("depth") or 0))
    return Window(spec, starts, series, kinds)


def totals(client: redis.Redis) -> dict[tuple[str, str], int]:
    """Jobs ended since the store began, by ``(kind, outcome)`` (``/metrics``)."""
    found: dict[str, str] = client.hgetall(TOTALS)  # type: ignore[assignment]
    out: dict[tuple[str, str], int] = {}
    for name, value in found.items():
        code, _, kind = name.partition(":")
        if code in OUTCOME_NAMES:
            out[(kind, OUTCOME_NAMES[code])] = int(value)
    return out


def last_failures(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """Each kind's last failure: ``{"jobId", "at", "message"}``."""
    found: dict[str, str] = client.hgetall(LAST_FAILURE)  # type: ignore[assignment]
    out: dict[str, dict[str, Any]] = {}
    for name, value in found.items():
        part, _, kind = name.partition(":")
        entry = out.setdefault(kind, {"jobId": "", "at": None, "message": ""})
        if part == "id":
            entry["jobId"] = value
        elif part == "at":
            entry["at"] = float(value)
        elif part == "message":
            entry["message"] = value
    return out


class DepthSampler:
    """The tick's sample of the queue depth (``shared/lua/history_depth.lua``)."""

    def __init__(self, client: redis.Redis) -> None:
        self._script = scripts.register(client, "history_depth")

    def sample(self, now: float | None = None) -> int:
        """Keep the queued jobs' count as each current bucket's peak; the count."""
        return int(scripts.run(self._script, [keys.state_index(QUEUED)], {
            "now": repr(time.time() if now is None else now),
            "buckets": LUA_FIELDS["buckets"]}))
