"""A job's life in one place: every job starts here, every change is reacted to here.

:class:`Lifecycle` is the one way in, for the site (one per app), the worker
(its fallback and direct reports, the bulk kind) and the tick process alike;
nothing here knows Flask. Entry points parse their input, call one method and
answer with what it returns or raises (``shared.errors``).

* **Starting** (``starting.py``: :meth:`~Lifecycle.start`,
  :meth:`~Lifecycle.start_batch`): the job is stored, then handed over as its
  kind says (``queueing.py``): claimed over HTTP for an external kind (its
  kind's queue), else run by RQ (``RUN_KIND_JOB`` by dotted name, with the
  kind's ``timeout`` and a per-job callback token); ``run_at`` waits in RQ's
  scheduler either way; every job in its tenant's turn (fair share), within its
  kind's concurrency limit. Forms, the API, batches, the tick, a batch's
  ``onComplete`` and the bulk kind all start jobs through it.
* **Changing** (``changing.py``: :meth:`~Lifecycle.report`,
  :meth:`~Lifecycle.report_many`, :meth:`~Lifecycle.claim`,
  :meth:`~Lifecycle.sweep`, :meth:`~Lifecycle.cancel`, :meth:`~Lifecycle.retry`,
  pausing and resuming a kind): the store applies the change atomically (its Lua
  scripts), then :meth:`~Lifecycle.changed` (``reactions.py``) runs every
  reaction on what was stored. A new reaction is added once
  (:meth:`~Lifecycle.add_reaction`).
* **Retrying** (a kind's ``retries``): the store turns a failed attempt with
  attempts left into ``scheduled`` (``shared/lua/lib/retry.lua``), whatever
  reported it; a reaction has RQ's scheduler run ``RETRY_JOB`` at its
  ``retry_at``, which :meth:`~Lifecycle.release_retry` turns into a queued job,
  in its tenant's turn (fair share), with a new per-job token
  (``shared/retries.py``).

The four parts are mixins over one shared state (``base.py``, which also lists
the few methods one part calls on another); :class:`Lifecycle` builds that
state and is nothing but their sum.
"""

from __future__ import annotations

import threading
from typing import Any

import redis

from shared import webhooks
from shared.after import Waits
from shared.capacity import Capacity
from shared.claimqueue import ExternalQueues
from shared.concurrency import ConcurrencyLimits
from shared.fairshare import FairShare
from shared.kinds import JobKind
from shared.kinds.policy import DEFAULT_PRIORITY, PRIORITIES
from shared.lifecycle.base import Reaction
from shared.lifecycle.changing import Changing
from shared.lifecycle.queueing import Queueing
from shared.lifecycle.reactions import Reacting
from shared.lifecycle.starting import Starting
from shared.pause import KindPause
from shared.priority import rq_queue_name
from shared.push import Pusher
from shared.quotas import Quotas
from shared.retries import Retries
from shared.rqconf import rq_queue
from shared.store import JobStore
from shared.unique import UniqueKeys
from shared.uploads import UploadStore

__all__ = ["Lifecycle", "Reaction"]


class Lifecycle(Starting, Queueing, Changing, Reacting):
    """Starts jobs and reacts to their changes, on one Redis (see the module)."""

    def __init__(self, cfg: Any, client: redis.Redis, raw: redis.Redis,
                 kinds: dict[str, JobKind], pusher: Pusher, store: JobStore | None = None
                 ) -> None:
        self.cfg = cfg
        self.client = client  # str replies
        self.kinds = kinds  # every kind of JOB_KINDS, the hidden ones too
        self.pusher = pusher
        self.store = store or JobStore(client, ttl=cfg.JOB_TTL, max_stored=cfg.MAX_STORED_JOBS,
                                       log_max=cfg.JOB_LOG_MAX, lease_seconds=cfg.LEASE_SECONDS)
        self.queue = rq_queue(cfg.QUEUE_NAME, raw)  # RQ wants bytes; JSON, never pickle
        # One RQ queue per priority, highest first (shared/priority.py); normal's is self.queue.
        self.queues = {p: self.queue if p == DEFAULT_PRIORITY else
                       rq_queue(rq_queue_name(cfg.QUEUE_NAME, p), raw) for p in PRIORITIES}
        self.pause = KindPause(client, ttl=cfg.JOB_TTL)  # paused kinds (shared/pause.py)
        # Webhook deliveries on their own queue and worker: never behind, nor in, a user job.
        self.webhook_queue = rq_queue(webhooks.queue_name(cfg.QUEUE_NAME), raw)
        self.external = ExternalQueues(client, lease_seconds=cfg.LEASE_SECONDS,
                                       max_attempts=cfg.MAX_ATTEMPTS)
        self.capacity = Capacity(cfg, client)
        self.fair = FairShare(client, depth=cfg.FAIR_SHARE_DEPTH, ttl=cfg.JOB_TTL)
        self.quotas = Quotas(cfg, client)
        self.uploads = UploadStore(client, ttl=cfg.JOB_TTL)
        self.limits = ConcurrencyLimits(client, kinds, ttl=cfg.JOB_TTL)
        self.waits = Waits(client, ttl=cfg.JOB_TTL)  # jobs started after others
        self.unique = UniqueKeys(client, ttl=cfg.JOB_TTL)  # kinds' unique keys
        self._sweeping = threading.Lock()  # one sweep at a time in this process
        self.retries = Retries(self)
        self.reactions = self._built_in_reactions()
