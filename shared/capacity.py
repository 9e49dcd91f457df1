"""The store's global caps: starting work is refused once the store is full.

No client may fill Redis. Before a job is stored, :meth:`Capacity.ensure_room`
checks that fewer than ``MAX_STORED_JOBS`` jobs are stored (the entries of the
recent index, which lists every stored one, younger than the TTL) and that
Redis uses less than the byte limit: ``STORE_MAX_BYTES``, or 90% of Redis's ``maxmemory`` when
that is 0. Past a cap it raises :class:`StorageFull` and nothing is stored.
The memory figures are read with ``INFO memory`` at most once a second per
process.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

from shared import keys
from shared.errors import Unavailable

RETRY_AFTER_SECONDS = 60
MEMORY_HIGH_WATER = 0.9  # of maxmemory, when STORE_MAX_BYTES is 0
MEMORY_CACHE_SECONDS = 1.0


class StorageFull(Unavailable):
    """The store holds as much as it may: nothing was stored (503, ``Retry-After``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after=RETRY_AFTER_SECONDS)


@dataclass(frozen=True)
class Memory:
    """Redis memory in use, its ``maxmemory`` (0: none) and the store's byte limit."""

    used: int
    maxmemory: int
    limit: int

    @property
    def full(self) -> bool:
        """True once the byte limit (if any) is reached."""
        return bool(self.limit) and self.used >= self.limit

    def as_dict(self) -> dict[str, Any]:
        """For ``/healthz``."""
        return {"used_memory": self.used, "maxmemory": self.maxmemory,
                "store_limit": self.limit, "full": self.full}


def read_memory(client: redis.Redis, store_max_bytes: int) -> Memory:
    """``INFO memory`` of ``client``'s Redis, with the store's byte limit."""
    info: dict[str, Any] = client.info("memory")  # type: ignore[assignment]
    used = int(info.get("used_memory", 0))
    maxmemory = int(info.get("maxmemory", 0))
    limit = store_max_bytes or int(maxmemory * MEMORY_HIGH_WATER)
    return Memory(used, maxmemory, limit)


def is_out_of_memory(exc: redis.RedisError) -> bool:
    """True for Redis's OOM refusal (``maxmemory`` reached with ``noeviction``)."""
    return isinstance(exc, redis.exceptions.OutOfMemoryError) or (
        isinstance(exc, redis.exceptions.ResponseError) and "OOM command not allowed" in str(exc))


class Capacity:
    """The caps of one Redis, with its memory figures cached for a second."""

    def __init__(self, cfg: Any, client: redis.Redis) -> None:
        self.cfg = cfg
        self.client = client
        self._lock = threading.Lock()
        self._memory: tuple[float, Memory] | None = None

    def memory(self) -> Memory:
        """Redis's memory figures, read at most once a second."""
        now = time.monotonic()
        with self._lock:
            cached = self._memory
        if cached is None or now - cached[0] >= MEMORY_CACHE_SECONDS:
            cached = (now, read_memory(self.client, self.cfg.STORE_MAX_BYTES))
            with self._lock:
                self._memory = cached
        return cached[1]

    def ensure_room(self) -> None:
        """Raise :class:`StorageFull` when one more job would pass a cap."""
        cfg = self.cfg
        # Only entries younger than the TTL: older ones have expired (the index is
        # trimmed by age only when something is created).
        jobs = int(self.client.zcount(keys.RECENT_JOBS, time.time() - cfg.JOB_TTL, "+inf"))  # type: ignore[arg-type]
        if jobs >= cfg.MAX_STORED_JOBS:
            raise StorageFull(f"The site stores as many jobs as it may ({cfg.MAX_STORED_JOBS}); "
                              "try again later, when older ones have expired.")
        if self.memory().full:
            raise StorageFull("The store is full; try again later, when older jobs and "
                              "snippets have expired.")
