"""Per-key concurrency: at most ``limit`` jobs of a kind at once, per value of an argument.

A kind declares ``concurrency={"limit": 2, "key": "account"}`` (``shared/kinds/policy.py``).
Its jobs fall into *groups*, one per value of the key argument (one group for the
whole kind without a key). A job takes one of its group's ``limit`` *slots* when it
is let through to its queue and gives it back when it ends (or leaves the queued and
running states some other way); while every slot is taken, the group's new jobs are
*held*: they stay ``queued``, in order, with ``heldBy`` saying which limit holds them
("2 of 2 running for account=acme"). When a slot is given back, the oldest held job
of that group takes it and joins its queue. Nothing polls: the release is a reaction
of :class:`shared.lifecycle.Lifecycle` on the change that ended a job, in whichever
process stored it; both steps are Lua scripts (``shared/lua/conc_gate.lua``,
``conc_release.lua``), atomic across every web and worker process, RQ and external
kinds alike.

A slot whose job ended without giving it back (a process died between storing the
end and reacting to it, or the job expired) is freed by the next gate or release of
its group, and by :meth:`ConcurrencyLimits.heal`, which the tick process runs now
and then over every group that holds jobs back.

**With fair share** (``shared/fairshare.py``): a job asks for its slot *before* it
takes a place in its tenant's line, so a held job never keeps its tenant's place: the
tenant's jobs for other accounts go on. A held job that took a place anyway (a retry,
a scheduled release: they come through ``Lifecycle._queue_admitted``) gives it back
at once. A job let through by a freed slot joins its tenant's line at the back. Its
slot is counted from then on, while it may still wait there: "running" in the message
means "let through and not ended", which is the same thing whenever the tenant has
nothing else waiting.

**Why not RQ 3.0's own limits** (an enqueue with ``rate_limit=RateLimit(key, n)``,
``rq/rate_limit.py``): they compose badly with fair share and cover only RQ. RQ's
promotion pushes a waiting job straight onto the RQ queue from its own Lua script,
so fair share cannot be put between the limit and the queue; the other order (fair
share first) makes a held job sit on its tenant's only place until a slot frees,
which stops that tenant's jobs for every other account. RQ also refuses rate-limited
jobs in a pipeline (a batch of 10,000 would take 10,000 round trips), never tells us
when a job is promoted (the page would keep saying "held"), and external kinds need
a mechanism of their own anyway. One mechanism for both keeps the message and the
rules the same for every kind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from shared import keys, scripts
from shared.protocol import QUEUED, RUNNING

if TYPE_CHECKING:
    from shared.kinds import JobKind

LOOK = 1000  # held ids one call looks at per group, at most
SHOWN_VALUE = 60  # characters of a key's value a message shows


@dataclass(frozen=True)
class Promoted:
    """A held job that took a freed slot: it joins its kind's queue in its tenant's turn."""

    job_id: str
    kind: str
    tenant: str


@dataclass(frozen=True)
class Gated:
    """What :meth:`ConcurrencyLimits.gate` decided: ids that go on, ids held back, and
    held jobs of the same groups that took slots freed meanwhile."""

    passed: list[str]
    held: list[str]
    promoted: list[Promoted]


def _promoted(flat: list[Any] | None) -> list[Promoted]:
    items = [str(x) for x in flat or []]
    return [Promoted(*items[i:i + 3]) for i in range(0, len(items) - 2, 3)]


def held_by(raw: str | None) -> dict[str, Any] | None:
    """The ``heldBy`` payload of a held job from its stored ``held_by`` (None: not held):
    ``{"limit", "running", "key", "value", "text"}``, ``text`` the message in words."""
    if not raw:
        return None
    try:
        data = json.loads(raw)
        limit, running = int(data["limit"]), int(data["taken"])
        key, value = str(data.get("key") or ""), str(data.get("value") or "")
    except (ValueError, TypeError, KeyError):
        return None
    shown = value if len(value) <= SHOWN_VALUE else value[:SHOWN_VALUE - 1] + "…"
    text = (f"{running} of {limit} running for {key}={shown}" if key
            else f"{running} of {limit} running of this kind")
    held: dict[str, Any] = {"limit": limit, "running": running}
    if key:
        held.update(key=key, value=value)
    held["text"] = text
    return held


class ConcurrencyLimits:
    """The slots of ``kinds`` that declare a concurrency limit, on ``client``
    (``decode_responses=True``)."""

    def __init__(self, client: redis.Redis, kinds: Mapping[str, JobKind],
                 ttl: int = 7 * 24 * 3600) -> None:
        self.client = client
        self.ttl = ttl
        self.policies = {name: {"limit": kind.policy.concurrency.limit,
                                "key": kind.policy.concurrency.key}
                         for name, kind in kinds.items() if kind.policy.concurrency is not None}
        self._gate = scripts.register(client, "conc_gate")
        self._release = scripts.register(client, "conc_release")

    @property
    def active(self) -> bool:
        """True when some kind declares a limit (else every call here is skipped)."""
        return bool(self.policies)

    def limited(self, kind: str) -> bool:
        """True when ``kind`` declares a concurrency limit."""
        return kind in self.policies

    def _fields(self) -> dict[str, Any]:
        return {"policies": self.policies, "prefix": keys.CONC_PREFIX,
                "job_prefix": keys.JOB_KEY_PREFIX, "queued": QUEUED, "running": RUNNING,
                "look": LOOK}

    def gate(self, job_ids: list[str]) -> Gated:
        """Ask a slot for each of ``job_ids`` (stored, queued, in order): the ids that go
        on to their queue, those held back, and held jobs that took freed slots."""
        if not job_ids or not self.active:
            return Gated(list(job_ids), [], [])
        raw: list[Any] = scripts.run(self._gate, [keys.CONC_SLOTS, keys.CONC_GROUPS],
                                     {**self._fields(), "ids": job_ids, "ttl": self.ttl})
        return Gated([str(i) for i in raw[0] or []], [str(i) for i in raw[1] or []],
                     _promoted(raw[2]))

    def release(self, job_ids: list[str]) -> list[Promoted]:
        """``job_ids`` changed: those no longer queued or running give their slots back;
        the held jobs that take them."""
        if not job_ids or not self.active:
            return []
        return _promoted(scripts.run(self._release, [keys.CONC_SLOTS, keys.CONC_GROUPS],
                                     {**self._fields(), "ids": job_ids, "every": False}))

    def heal(self) -> list[Promoted]:
        """Free every slot whose job ended without giving it back, in every group that
        holds jobs back; the held jobs that take them."""
        return _promoted(scripts.run(self._release, [keys.CONC_SLOTS, keys.CONC_GROUPS],
                                     {**self._fields(), "ids": [], "every": True}))
