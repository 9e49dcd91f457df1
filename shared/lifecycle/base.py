"""What the parts of the lifecycle share, and the seams between them.

:class:`~shared.lifecycle.Lifecycle` is one object made of four parts (mixins,
each a direct subclass of :class:`LifecycleBase`, none of another):
``starting.py``, ``queueing.py``, ``changing.py`` and ``reactions.py``. They
share the settings, clients and stores that ``Lifecycle.__init__`` builds,
declared here with their types. A part calls another only through the methods
declared below under ``TYPE_CHECKING`` (the type checker holds each part to
them; at run time they do not exist here, so the part's own method is the one
called): that list is the whole of what the parts ask of each other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import redis
from rq import Queue
from rq.job import Job, JobStatus

from shared.after import Settled, Waits
from shared.capacity import Capacity
from shared.claimqueue import ExternalQueues
from shared.concurrency import ConcurrencyLimits, Promoted
from shared.errors import NotFound
from shared.events import Change
from shared.fairshare import Admitted, FairShare
from shared.kinds import JobKind
from shared.kinds.policy import DEFAULT_PRIORITY
from shared.pause import KindPause
from shared.push import Pusher
from shared.quotas import Quotas
from shared.retries import Retries
from shared.store import JobState, JobStore
from shared.unique import UniqueKeys
from shared.uploads import UploadStore

Reaction = Callable[[list[Change]], object]
# RQ states in which the job may still run: a retry waits until they are over.
RQ_ACTIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED,
             JobStatus.SCHEDULED, JobStatus.CREATED}
ENQUEUE_CHUNK = 500


class LifecycleBase:
    """The state every part reads (built by ``Lifecycle.__init__``) and the seams."""

    cfg: Any
    client: redis.Redis  # str replies
    kinds: dict[str, JobKind]  # every kind of JOB_KINDS, the hidden ones too
    pusher: Pusher
    store: JobStore
    queue: Queue  # the normal priority's RQ queue
    queues: dict[str, Queue]  # one RQ queue per priority (shared/priority.py)
    pause: KindPause
    webhook_queue: Queue
    external: ExternalQueues
    capacity: Capacity
    fair: FairShare
    quotas: Quotas
    uploads: UploadStore
    limits: ConcurrencyLimits
    waits: Waits
    unique: UniqueKeys
    retries: Retries
    reactions: list[Reaction]
    _sweeping: threading.Lock

    def kind(self, name: str) -> JobKind:
        """The kind ``name``; :class:`NotFound` for one this site does not declare."""
        found = self.kinds.get(name)
        if found is None:
            raise NotFound(f"unknown kind {name[:40]!r}", {"kind": "is not a kind of this site"})
        return found

    if TYPE_CHECKING:  # the seams: each implemented by the part named (see the module)
        # starting.py
        def start(self, kind: JobKind | str, args: dict[str, Any], *, owner: str = "",
                  webhook: str | None = None, run_at: datetime | None = None,
                  fields: dict[str, str] | None = None, job_id: str | None = None,
                  at_front: bool = False, room: bool = True, tenant: str = "",
                  address: str = "", quota: bool = True, after: Sequence[str] = (),
                  priority: str | None = None) -> JobState: ...

        # queueing.py
        def left_queue(self, job_id: str) -> None: ...

        def run_again(self, rq_job: Job, attempt: int, tenant: str) -> None: ...

        def _hand_over(self, kind: JobKind, jobs: list[tuple[str, dict[str, Any]]], *,
                       tenant: str = "", run_at: datetime | None = None,
                       at_front: bool = False, admit: bool = True,
                       priority: str = DEFAULT_PRIORITY) -> None: ...

        def _admit(self, state: JobState) -> None: ...

        def _admit_external(self, kind: str, tenant: str, job_ids: list[str],
                            priority: str = DEFAULT_PRIORITY) -> None: ...

        def _queue_admitted(self, admitted: Admitted | None,
                            created: dict[str, Job] | None = None) -> None: ...

        def _rq_job_again(self, job_id: str) -> Job | None: ...

        def _not_queued(self, job_id: str) -> None: ...

        def _enqueue_webhook(self, job_id: str, delivery: str) -> None: ...

        def _let_through(self, promoted: list[Promoted]) -> None: ...

        # changing.py
        def stop_in_rq(self, job_id: str) -> None: ...

        # reactions.py
        def changed(self, states: Iterable[JobState], at: float | None = None,
                    created: bool = False) -> None: ...

        def _settle(self, settled: list[Settled]) -> None: ...
