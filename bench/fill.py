"""Filling Redis with many stored jobs, fast, through the site's own ``create_job.lua``.

Each job is one run of the script the site uses to create a job (its hash,
its timeline and every index entry, atomically), sent in pipelines of
``CHUNK``. The jobs are copies of a real finished job (its hash as the site
and worker left it, from section 9's batch), with a spread of states, kinds,
owners and messages, so the filters have something to tell apart.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

import redis

from shared.protocol import new_id
from shared.store import JobStore

CHUNK = 2000
OWNERS = 1000  # browser sessions
# (state, share): most jobs are over; a few wait or run
STATES = (("succeeded", 0.80), ("failed", 0.10), ("cancelled", 0.05), ("queued", 0.03),
          ("running", 0.02))
KINDS = (("demo", 0.70), ("csv_import", 0.20), ("highlight", 0.10))
MESSAGES = {"failed": ("Timeout while reading the upload", "ValueError: bad row 17",
                       "The worker stopped (lost)"),
            "cancelled": ("Cancelled by its owner",)}
DROPPED = ("batch_id", "created_at", "updated_at", "kind", "owner")  # set per job


@dataclass(frozen=True)
class Filled:
    """What a fill stored."""

    count: int
    seconds: float
    used_before: int  # INFO memory used_memory, bytes
    used_after: int
    owners: list[str]

    @property
    def per_job(self) -> float:
        """Bytes of Redis memory per stored job."""
        return (self.used_after - self.used_before) / max(1, self.count)


def _pick(choices: tuple[tuple[str, float], ...], rng: random.Random) -> str:
    return rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def used_memory(client: redis.Redis) -> int:
    """``used_memory`` of INFO memory, bytes."""
    return int(client.info("memory")["used_memory"])


def fill(store: JobStore, count: int, template: dict[str, str], seed: int = 16) -> Filled:
    """Create ``count`` jobs like ``template``, created over the last ``count / 100`` s."""
    rng = random.Random(seed)
    owners = [f"u-{rng.getrandbits(64):016x}" for _ in range(OWNERS)]
    base = {k: v for k, v in template.items() if k not in DROPPED}
    client = store.client
    before = used_memory(client)
    start = time.perf_counter()
    now = time.time() - count / 100
    for first in range(0, count, CHUNK):
        pipe = client.pipeline(transaction=False)
        for i in range(first, min(count, first + CHUNK)):
            state = _pick(STATES, rng)
            extra: dict[str, Any] = dict(base, state=state,
                                         message=rng.choice(MESSAGES.get(state, ("Done",))))
            stamp = now + i / 100
            for name in ("started_at", "finished_at"):
                if name in base:
                    extra[name] = repr(stamp + 0.05)
            call = store._create_call(new_id(), _pick(KINDS, rng), rng.choice(owners), stamp,
                                      extra)
            store._create(**call, client=pipe)
        pipe.execute()
    seconds = time.perf_counter() - start
    return Filled(count, seconds, before, used_memory(client), owners)
