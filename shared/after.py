"""Dependencies: a job started ``after`` others waits until they have all succeeded.

A job started with ``after: [id, ...]`` is stored in state ``waiting``, with the
ids in its ``after`` field and those not yet succeeded in ``waiting_for`` (ids
separated by spaces; ``waitingFor`` in its payload). Its RQ job is saved but not
queued (``Lifecycle._hand_over(..., admit=False)``), as fair share saves a held
one; an external job has none until it is queued.

Each job it waits for that has not ended gets the waiting id in a Redis set of
its own (``keys.job_waiters_key``). The lifecycle's reaction to a job's end reads
that set (:meth:`Waits.ended`, ``shared/lua/after_done.lua``); the registration
(:meth:`Waits.register`, ``after_wait.lua``) reads each dependency's state and
adds to its set in one script run, so a dependency that ends meanwhile is never
missed: either the registration sees it ended, or its end finds the id in the set.

When the last one succeeds the job moves to ``queued`` and is handed over in its
tenant's turn (fair share). A dependency that fails, is cancelled or is gone
cancels the waiting job, with a message naming it, unless its kind declares
``after_failure="run"`` (``shared/kinds/policy.py``): it then runs anyway, its
message naming the one that did not succeed. Why not RQ's ``depends_on``: it
knows only RQ jobs (not external kinds' jobs), and it would enqueue the job
behind fair share's back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import redis

from shared import keys, scripts
from shared.errors import Invalid
from shared.protocol import (
    CANCELLED,
    FAILED,
    QUEUED,
    SUCCEEDED,
    TERMINAL_STATES,
    WAITING,
    is_uuid,
)
from shared.store import TRANSITION_FIELDS

AFTER_MAX = 100  # ids one job may wait for
READY, STILL_WAITING, CANCELLED_NOW = "ready", "still", "called_off"  # outcomes (lib/after.lua)
_WORDS = {"waiting": WAITING, "queued": QUEUED, "cancelled": CANCELLED, "succeeded": SUCCEEDED,
          "gone_text": "it waited for no longer exists",
          "ended_text": {FAILED: "it waited for failed", CANCELLED: "it waited for was cancelled"},
          "run_text": "; this job runs anyway"}


class Settled(NamedTuple):
    """A waiting job that changed: ``outcome`` is ``ready`` (now queued), ``still``
    (waiting, for fewer) or ``called_off`` (cancelled); ``batch_done`` when its
    cancel ended its batch's last child."""

    job_id: str
    outcome: str
    batch_done: bool


def check_after(raw: object, job_id: str = "") -> tuple[str, ...]:
    """The ids of an ``after`` list, lower case and in order: a list of at most
    ``AFTER_MAX`` job ids, none twice, not ``job_id`` itself; :class:`Invalid`
    naming ``after`` otherwise. (An empty list waits for nothing.)"""
    def bad(problem: str) -> Invalid:
        return Invalid(f"after {problem}", {"after": problem})

    if not isinstance(raw, list):
        raise bad("must be a list of job ids")
    if len(raw) > AFTER_MAX:
        raise bad(f"may name at most {AFTER_MAX} jobs")
    ids: list[str] = []
    for value in raw:
        if not is_uuid(value):
            raise bad("must hold job ids (UUIDs) only")
        if value.lower() in ids:
            raise bad(f"names job {value.lower()} twice")
        ids.append(value.lower())
    if job_id and job_id in ids:
        raise bad("names the job itself")
    return tuple(ids)


class Waits:
    """The waits of jobs on ``client`` (``decode_responses=True``)."""

    def __init__(self, client: redis.Redis, ttl: int) -> None:
        self.client = client
        self.ttl = ttl
        self._wait = scripts.register(client, "after_wait")
        self._done = scripts.register(client, "after_done")

    def missing(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` that name no stored job."""
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.exists(keys.job_key(job_id))
        return [job_id for job_id, found in zip(ids, pipe.execute() if ids else [], strict=True)
                if not found]

    def _fields(self) -> dict[str, Any]:
        return {**TRANSITION_FIELDS, **_WORDS, "now": repr(time.time()),
                "job_prefix": keys.JOB_KEY_PREFIX}

    def register(self, job_ids: Sequence[str], after: Sequence[str]) -> list[Settled]:
        """Make the stored ``waiting`` jobs ``job_ids`` wait for ``after``; those that
        changed at once (some of ``after`` had ended already), in one round trip."""
        fields = {**self._fields(), "after": list(after), "ttl": self.ttl,
                  "waiters_suffix": keys.WAITERS_SUFFIX}
        calls = [([keys.job_key(job_id)], {**fields, "id": job_id}) for job_id in job_ids]
        settled = []
        for job_id, raw in zip(job_ids, scripts.run_each(self.client, self._wait, calls),
                               strict=True):
            if isinstance(raw, redis.RedisError):
                raise raw
            outcome, done = str(raw[0]), int(raw[1])
            if outcome in (READY, CANCELLED_NOW):
                settled.append(Settled(job_id, outcome, bool(done)))
        return settled

    def ended(self, ended: Sequence[tuple[str, str]]) -> list[Settled]:
        """Jobs ``(id, state)`` ended: the waiting jobs that changed, in one round trip."""
        if not ended:
            return []
        fields = self._fields()
        calls = [([keys.job_waiters_key(job_id)], {**fields, "id": job_id, "state": state})
                 for job_id, state in ended if state in TERMINAL_STATES]
        settled = []
        for raw in scripts.run_each(self.client, self._done, calls):
            if isinstance(raw, redis.RedisError):
                raise raw
            for i in range(0, len(raw), 3):
                settled.append(Settled(str(raw[i]), str(raw[i + 1]), bool(int(raw[i + 2]))))
        return settled
