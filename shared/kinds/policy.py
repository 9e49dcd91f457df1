"""A kind's flow-control policy: how its jobs are retried, deduplicated, ordered and watched.

Declared with :func:`shared.kinds.job_kind` (and ``external_kind``) keyword
arguments, all optional; the defaults are the behaviour of a kind that declares
none::

    @job_kind("sync", title="Sync", retries=3, backoff=[5, 30, 120], unique=["account"],
              concurrency={"limit": 2, "key": "account"}, priority="normal",
              stall_after=300, stall_fails=False, after_failure="cancel")

* ``retries``: failed attempts retried (0: none). ``backoff``: seconds before
  each retry, a list (the last repeats), or ``"exponential"`` (1 s, 2 s, 4 s…
  capped at ``BACKOFF_CAP`` with full jitter).
* ``unique``: argument names forming a key; a start whose key matches a job of
  the kind not yet ended answers the existing job.
* ``concurrency``: ``{"limit": n}`` running at once, or ``{"limit": n, "key":
  "<argument>"}`` running at once per value of that argument.
* ``priority``: the kind's default, ``high``, ``normal`` or ``low``.
* ``stall_after``: seconds without a report after which a running job shows as
  stalled (None: ``STALL_AFTER``); ``stall_fails``: a stall fails the attempt.
* ``after_failure``: what a job waiting for others (``after``) does when one of
  them fails or is cancelled: ``cancel`` (default) or ``run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.errors import JobcastError

PRIORITIES = ("high", "normal", "low")  # highest first
DEFAULT_PRIORITY = "normal"
EXPONENTIAL = "exponential"
BACKOFF_CAP = 3600.0  # seconds: the longest exponential wait
AFTER_FAILURE = ("cancel", "run")


class PolicyError(JobcastError):
    """A kind's policy declared wrongly."""


@dataclass(frozen=True)
class Concurrency:
    """At most ``limit`` jobs of the kind running at once (per value of ``key``)."""

    limit: int
    key: str = ""


@dataclass(frozen=True)
class Policy:
    """A kind's flow control (see the module)."""

    retries: int = 0
    backoff: tuple[float, ...] | str = (0.0,)
    unique: tuple[str, ...] = ()
    concurrency: Concurrency | None = None
    priority: str = DEFAULT_PRIORITY
    stall_after: float | None = None
    stall_fails: bool = False
    after_failure: str = "cancel"

    @property
    def max_attempts(self) -> int:
        """Attempts a job of the kind gets in all: the first and its retries."""
        return 1 + self.retries

    def to_json(self) -> dict[str, Any]:
        """What ``GET /api/kinds`` and the OpenAPI spec show of the policy."""
        concurrency = (None if self.concurrency is None else
                       {"limit": self.concurrency.limit, **(
                           {"key": self.concurrency.key} if self.concurrency.key else {})})
        return {"retries": self.retries,
                "backoff": (self.backoff if isinstance(self.backoff, str)
                            else list(self.backoff)),
                "unique": list(self.unique), "concurrency": concurrency,
                "priority": self.priority, "stallAfter": self.stall_after,
                "stallFails": self.stall_fails, "afterFailure": self.after_failure}


def make_policy(kind: str, arg_names: set[str], *, retries: int = 0,
                backoff: list[float] | tuple[float, ...] | str | None = None,
                unique: list[str] | tuple[str, ...] | None = None,
                concurrency: dict[str, Any] | None = None, priority: str = DEFAULT_PRIORITY,
                stall_after: float | None = None, stall_fails: bool = False,
                after_failure: str = "cancel") -> Policy:
    """The checked :class:`Policy` of kind ``kind`` (whose schema names ``arg_names``);
    :class:`PolicyError` naming what is wrong."""
    def bad(what: str) -> PolicyError:
        return PolicyError(f"kind {kind!r}: {what}")

    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 100:
        raise bad("retries must be an integer from 0 to 100")
    steps: tuple[float, ...] | str
    if backoff is None:
        steps = (0.0,)
    elif backoff == EXPONENTIAL:
        steps = EXPONENTIAL
    elif (isinstance(backoff, (list, tuple)) and backoff
          and all(isinstance(s, (int, float)) and not isinstance(s, bool) and 0 <= s <= 86400
                  for s in backoff)):
        steps = tuple(float(s) for s in backoff)
    else:
        raise bad(f"backoff must be a non-empty list of seconds (0 to 86400) or "
                  f"{EXPONENTIAL!r}")
    names = tuple(unique or ())
    for name in names:
        if name not in arg_names:
            raise bad(f"unique names {name!r}, which is not one of its arguments")
    limit = None
    if concurrency is not None:
        if not isinstance(concurrency, dict) or set(concurrency) - {"limit", "key"}:
            raise bad('concurrency must be {"limit": n} or {"limit": n, "key": "<argument>"}')
        n, key = concurrency.get("limit"), concurrency.get("key", "")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise bad("concurrency's limit must be an integer of at least 1")
        if key and key not in arg_names:
            raise bad(f"concurrency's key {key!r} is not one of its arguments")
        limit = Concurrency(n, key or "")
    if priority not in PRIORITIES:
        raise bad(f"priority must be one of {', '.join(PRIORITIES)}")
    if stall_after is not None and (not isinstance(stall_after, (int, float))
                                    or isinstance(stall_after, bool) or stall_after <= 0):
        raise bad("stall_after must be a number of seconds above 0")
    if after_failure not in AFTER_FAILURE:
        raise bad(f"after_failure must be one of {', '.join(AFTER_FAILURE)}")
    return Policy(retries=retries, backoff=steps, unique=names, concurrency=limit,
                  priority=priority, stall_after=None if stall_after is None else float(stall_after),
                  stall_fails=bool(stall_fails), after_failure=after_failure)
