"""Priorities: ``high``, ``normal`` and ``low``, each with queues of its own.

A job's priority is its kind's default (``kind.policy.priority``) or what its
start asked for (``"priority"`` in ``POST /api/jobs`` and batches; only an
operator may ask for more than the kind's default). It is stored on the job
(field ``priority``) and decides the queue it waits in:

* RQ kinds: ``<QUEUE_NAME>-high``, ``<QUEUE_NAME>`` and ``<QUEUE_NAME>-low``. The
  worker listens on the three in that order, and RQ always takes from the first
  queue that has a job (its default dequeue strategy), so a higher priority goes
  first. Fair share (``shared/fairshare.py``) keeps lanes per queue, so within a
  priority the owners are served fairly.
* External kinds: one list per kind and priority (``external_queue_key``, with
  ``:high`` or ``:low`` after the kind's name for the other two); a claim takes
  from the claimed kinds' high lists first, then normal, then low
  (``shared/lua/claim_external.lua`` takes from its keys in order).

Strict priority can starve a lower one while higher jobs keep coming: that is
what a priority means here (as in RQ, Dramatiq and Oban); ``position`` shows it.
"""

from __future__ import annotations

from shared import keys
from shared.errors import Forbidden, Invalid
from shared.fairshare import EXTERNAL_LANE, RQ_LANE, external_lane, rq_lane
from shared.kinds.policy import DEFAULT_PRIORITY, PRIORITIES

RANK = {name: rank for rank, name in enumerate(PRIORITIES)}  # 0 is the highest


def of(value: object) -> str:
    """A stored priority, read leniently ('' or unknown: normal)."""
    return value if isinstance(value, str) and value in RANK else DEFAULT_PRIORITY


def rq_queue_name(base: str, priority: str) -> str:
    """The RQ queue of ``priority`` jobs: ``base`` for normal, ``base-high``/``base-low``."""
    return base if priority == DEFAULT_PRIORITY else f"{base}-{priority}"


def rq_queue_names(base: str) -> list[str]:
    """Every RQ queue of the site's jobs, highest priority first (how a worker listens)."""
    return [rq_queue_name(base, p) for p in PRIORITIES]


def rq_priority(base: str, queue_name: str) -> str:
    """The priority whose queue is ``queue_name`` (normal for any other name)."""
    return next((p for p in PRIORITIES if rq_queue_name(base, p) == queue_name),
                DEFAULT_PRIORITY)


def external_queue_key(kind: str, priority: str = DEFAULT_PRIORITY) -> str:
    """The list of an external kind's waiting ``priority`` jobs (normal: the kind's list)."""
    key = keys.external_queue_key(kind)
    return key if priority == DEFAULT_PRIORITY else f"{key}:{priority}"


def claim_keys(kinds: list[str]) -> list[str]:
    """The queues a claim of ``kinds`` takes from, in order: every high one, then normal,
    then low (within a priority, in the order the worker named its kinds)."""
    return [external_queue_key(kind, p) for p in PRIORITIES for kind in kinds]


def lane_of(queue_base: str, kind: str, external: bool, priority: str) -> str:
    """The fair-share lane of a job: its RQ queue's, or its external kind's and priority's."""
    if external:
        return external_lane(kind if priority == DEFAULT_PRIORITY else f"{kind}:{priority}")
    return rq_lane(rq_queue_name(queue_base, priority))


def external_of_lane(lane: str) -> tuple[str, str]:
    """``(kind, priority)`` of an external lane (``ext:<kind>[:<priority>]``)."""
    kind, _, priority = lane[len(EXTERNAL_LANE):].partition(":")
    return kind, of(priority)


def rq_queue_of_lane(lane: str) -> str:
    """The RQ queue name of an RQ lane (``rq:<queue>``)."""
    return lane[len(RQ_LANE):]


def checked(asked: object, default: str, operator: bool) -> str:
    """The priority a start may have: ``asked`` (None: the kind's ``default``).

    :class:`Invalid` for a value that is not a priority; :class:`Forbidden` (403)
    when someone but an operator asks for more than the kind's default (less is
    always allowed: a program may yield to others).
    """
    if asked is None:
        return default
    if not isinstance(asked, str) or asked not in RANK:
        raise Invalid(f"priority must be one of {', '.join(PRIORITIES)}",
                      {"priority": f"must be one of {', '.join(PRIORITIES)}"})
    if RANK[asked] < RANK[default] and not operator:
        raise Forbidden(f"only an operator may raise a job's priority above its kind's "
                        f"default ({default})", {"priority": f"at most {default} for you"})
    return asked
