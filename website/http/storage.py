"""Global storage caps: creation answers 503 once the store is full.

A 100 KB snippet becomes up to ``SNIPPET_HTML_MAX`` of HTML kept for days,
so no client may fill Redis. Before anything is stored, :func:`ensure_room`
checks that fewer than ``MAX_STORED_JOBS`` jobs and ``MAX_STORED_SNIPPETS``
snippets are stored (the entries of the recent indexes, which list every stored
one, younger than the TTL) and that Redis uses less than the byte limit: ``STORE_MAX_BYTES``, or
90% of Redis's ``maxmemory`` when that is 0. Past a cap it raises
:class:`StorageFull` (503 with ``Retry-After``, JSON under ``/api/``, an HTML
page otherwise) and nothing is stored. The memory figures are read with
``INFO memory`` at most once a second per process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis
from flask import current_app
from werkzeug.exceptions import ServiceUnavailable

from shared import keys
from website.extensions import redis_ext

RETRY_AFTER_SECONDS = 60
MEMORY_HIGH_WATER = 0.9  # of maxmemory, when STORE_MAX_BYTES is 0
MEMORY_CACHE_SECONDS = 1.0
_EXT = "jobcast.storage"


class StorageFull(ServiceUnavailable):
    """The store holds as much as it may: 503, nothing stored."""

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


def _memory() -> Memory:
    cache: dict[str, Any] = current_app.extensions.setdefault(_EXT, {})
    now = time.monotonic()
    if now - cache.get("at", -MEMORY_CACHE_SECONDS) >= MEMORY_CACHE_SECONDS:
        cache["memory"] = read_memory(redis_ext.client, current_app.config["STORE_MAX_BYTES"])
        cache["at"] = now
    return cache["memory"]  # type: ignore[no-any-return]


def ensure_room(snippet: bool = False) -> None:
    """Raise :class:`StorageFull` when one more job (and ``snippet``) would pass a cap."""
    cfg = current_app.config
    now = time.time()
    pipe = redis_ext.client.pipeline(transaction=False)
    # Only entries younger than the TTL: older ones have expired (the index is
    # trimmed by age only when something is created).
    pipe.zcount(keys.RECENT_JOBS, now - cfg["JOB_TTL"], "+inf")
    pipe.zcount(keys.RECENT_SNIPPETS, now - cfg["SNIPPET_TTL"], "+inf")
    jobs, snippets = (int(n) for n in pipe.execute())
    if jobs >= cfg["MAX_STORED_JOBS"]:
        raise StorageFull(f"The site stores as many jobs as it may ({cfg['MAX_STORED_JOBS']}); "
                          "try again later, when older ones have expired.")
    if snippet and snippets >= cfg["MAX_STORED_SNIPPETS"]:
        raise StorageFull(f"The site stores as many snippets as it may "
                          f"({cfg['MAX_STORED_SNIPPETS']}); try again later, when older "
                          "ones have expired.")
    if _memory().full:
        raise StorageFull("The store is full; try again later, when older jobs and "
                          "snippets have expired.")


def is_out_of_memory(exc: redis.RedisError) -> bool:
    """True for Redis's OOM refusal (``maxmemory`` reached with ``noeviction``)."""
    return isinstance(exc, redis.exceptions.OutOfMemoryError) or (
        isinstance(exc, redis.exceptions.ResponseError) and "OOM command not allowed" in str(exc))
