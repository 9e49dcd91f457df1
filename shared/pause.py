"""Pausing a kind: its running jobs finish, its other jobs wait until it is resumed.

An operator pauses a kind (``POST /api/kinds/<name>/pause``, or the dashboard);
the kind's name goes into a Redis set (:data:`shared.keys.PAUSED_KINDS`). What
waits, and where:

* RQ kinds: their jobs share RQ's queues with every other kind, and RQ cannot
  skip a kind in a queue. So a job of a paused kind is held back when fair share
  would put it on RQ's queue (``Lifecycle._queue_admitted``): its id goes to the
  kind's held list (``shared/lua/hold_paused.lua``, atomically with the flag)
  and its place in the queue goes to its tenant's next job. A job that was on
  RQ's queue already when the kind was paused is held back the same way when a
  worker takes it: ``run_kind`` hands it back first thing, without running it
  (``Lifecycle.held_back``). Its RQ job ends there; the resume queues it again.
* External kinds: each has queues of its own, so its jobs simply stay in them:
  a claim skips a paused kind (``Lifecycle.claim``).

Resuming (``Lifecycle.resume_kind``) clears the flag, then gives the held jobs
back to fair share, in order, in chunks. A queued job of a paused kind shows
``paused: true`` and "paused by an operator" on its page (``shared/position.py``,
pushed by the web process's position ticker within about a second).
"""

from __future__ import annotations

from typing import Any

import redis

from shared import keys, scripts


class KindPause:
    """The paused kinds and their held RQ jobs on ``client`` (``decode_responses=True``)."""

    def __init__(self, client: redis.Redis, ttl: int = 7 * 24 * 3600) -> None:
        self.client = client
        self.ttl = ttl
        self._hold = scripts.register(client, "hold_paused")

    def pause(self, kind: str) -> bool:
        """Pause ``kind``; False when it was paused already."""
        return bool(self.client.sadd(keys.PAUSED_KINDS, kind))

    def unpause(self, kind: str) -> bool:
        """Clear ``kind``'s pause flag; False when it was not paused."""
        return bool(self.client.srem(keys.PAUSED_KINDS, kind))

    def paused(self) -> set[str]:
        """The names of the paused kinds."""
        return {str(k) for k in self.client.smembers(keys.PAUSED_KINDS)}  # type: ignore[union-attr]

    def hold(self, ids: list[str], kinds: list[str]) -> set[str]:
        """Hold back those of ``ids`` (of ``kinds``, pairwise) whose kind is paused;
        their ids (one round trip, nothing held when no kind is paused)."""
        if not ids:
            return set()
        raw: list[Any] = scripts.run(self._hold, [keys.PAUSED_KINDS],
                                     {"ids": ids, "kinds": kinds,
                                      "prefix": keys.PAUSE_HELD_PREFIX, "ttl": self.ttl})
        return {str(i) for i in raw or []}

    def take(self, kind: str, count: int) -> list[str]:
        """Up to ``count`` of ``kind``'s held ids, oldest first (taken off its list)."""
        raw = self.client.lpop(keys.pause_held_key(kind), count)
        return [str(i) for i in raw or []]  # type: ignore[union-attr]

    def held(self, kind: str) -> int:
        """How many of ``kind``'s jobs are held back (ended ones included)."""
        return int(self.client.llen(keys.pause_held_key(kind)))  # type: ignore[arg-type]
