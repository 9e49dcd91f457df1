"""Unique jobs: one job of a kind at a time per value of its ``unique`` arguments.

A kind that declares ``unique=["account"]`` (``shared/kinds/policy.py``) has a key
per value of those arguments: ``keys.UNIQUE_PREFIX`` + kind + ``:`` + the SHA-256 of
the canonical JSON of the named values (sorted keys, no spaces; an argument left
out counts as ``null``). A start takes the key with the new job's id
(``shared/lua/unique_claim.lua``: SET unless a job not yet ended holds it, in one
script run, so two starts at once make one job); when a job holds it, the start
stores nothing and answers that job (``deduplicated``). The key is taken before
the job is stored, so a holder not stored yet still holds it for ``STORE_GRACE``
seconds. The job's hash keeps the key's name (``unique_key``); the lifecycle's
reaction to its end deletes the key if it still holds the job's id
(``unique_release.lua``). The key also expires
with the job's TTL, and a holder found ended or gone gives it up at the next
claim, so a missed release never blocks a kind.

A retried job does not take its key again: the retry runs beside any job started
with the same values meanwhile.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import redis

from shared import keys, scripts
from shared.kinds import JobKind
from shared.store import TERMINAL_SET

STORE_GRACE = 10  # seconds a job may take to be stored after taking its key
DEDUPLICATED = "deduplicated"  # JobState.extra marker of a start that found its job


def unique_key(kind: JobKind, args: dict[str, Any]) -> str | None:
    """The unique key of a job of ``kind`` with ``args``; None when the kind has none."""
    names = kind.policy.unique
    if not names:
        return None
    values = json.dumps({name: args.get(name) for name in names}, sort_keys=True,
                        separators=(",", ":"), ensure_ascii=False)
    return f"{keys.UNIQUE_PREFIX}{kind.name}:{hashlib.sha256(values.encode()).hexdigest()}"


class UniqueKeys:
    """The unique keys on ``client`` (``decode_responses=True``)."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.client = client
        self.ttl = ttl
        self._claim = scripts.register(client, "unique_claim")
        self._release = scripts.register(client, "unique_release")

    def claim_many(self, claims: Sequence[tuple[str, str]]) -> list[str]:
        """Take each ``(key, job_id)``, in one round trip; the id holding each key now
        (``job_id`` when it was taken for it)."""
        calls = [([key], {"id": job_id, "job_prefix": keys.JOB_KEY_PREFIX,
                          "terminal": TERMINAL_SET, "ttl": self.ttl,
                          "grace": STORE_GRACE})
                 for key, job_id in claims]
        holders = []
        for raw in scripts.run_each(self.client, self._claim, calls) if calls else []:
            if isinstance(raw, redis.RedisError):
                raise raw
            holders.append(str(raw))
        return holders

    def claim(self, key: str, job_id: str) -> str:
        """Take ``key`` for ``job_id``; the id holding it now (``job_id``: taken)."""
        return self.claim_many([(key, job_id)])[0]

    def give_back(self, key: str, job_id: str) -> None:
        """Give up ``key`` taken for ``job_id``, which was not stored after all."""
        with self.client.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.get(key) == job_id:
                    pipe.multi()
                    pipe.delete(key)
                    pipe.execute()
            except redis.WatchError:  # taken by another start meanwhile: it is theirs
                pass

    def release(self, job_ids: Sequence[str]) -> None:
        """Ended jobs give up the keys they hold, in one round trip."""
        calls = [([keys.job_key(job_id)], {"id": job_id}) for job_id in job_ids]
        for raw in scripts.run_each(self.client, self._release, calls) if calls else []:
            if isinstance(raw, redis.RedisError):
                raise raw
