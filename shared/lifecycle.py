"""A job's life in one place: every job starts here, every change is reacted to here.

:class:`Lifecycle` is the one way in, for the site (one per app), the worker
(its fallback and direct reports, the bulk kind) and the tick process alike;
nothing here knows Flask. Entry points parse their input, call one method and
answer with what it returns or raises (``shared.errors``).

* **Starting** (:meth:`start`, :meth:`start_batch`): the job is stored, then
  handed over as its kind says: claimed over HTTP for an external kind (its
  kind's queue), else run by RQ (``RUN_KIND_JOB`` by dotted name, with the
  kind's ``timeout`` and a per-job callback token); ``run_at`` waits in RQ's
  scheduler either way. Forms, the API, batches, the tick, a batch's
  ``onComplete`` and the bulk kind all start jobs through it. Before anything
  is stored, the store's global caps are checked, then the tenant's quotas are
  checked and taken (``shared/quotas.py``); an upload is stored once, apart
  from RQ's job, which names it only (``shared/uploads.py``).
* **Changing** (:meth:`report`, :meth:`report_many`, :meth:`claim`,
  :meth:`sweep`, :meth:`cancel`, :meth:`retry`): the store applies the change
  atomically (its Lua scripts), then :meth:`changed` runs every reaction on
  what was stored. A new reaction is added once (:meth:`add_reaction`): the
  push to watching pages (``shared/push.py``), a batch's ``onComplete``, the
  completion webhook, deleting the upload of a job that succeeded or was
  cancelled, and whatever a feature adds (metrics).
* **Retrying** (a kind's ``retries``): the store turns a failed attempt with
  attempts left into ``scheduled`` (``shared/lua/lib/retry.lua``), whatever
  reported it; a reaction has RQ's scheduler run ``RETRY_JOB`` at its
  ``retry_at``, which :meth:`release_retry` turns into a queued job, in its
  tenant's turn (fair share), with a new per-job token (``shared/retries.py``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import redis
from rq import Queue, Retry
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from shared import batches, keys, tracing, watch, webhooks
from shared.after import CANCELLED_NOW, READY, Settled, Waits, check_after
from shared.apikeys import batch_tenant
from shared.capacity import Capacity
from shared.claimqueue import Claim, ExternalQueues, LeasesLapsed
from shared.concurrency import ConcurrencyLimits, Promoted
from shared.errors import Conflict, Invalid, JobcastError, NotFound
from shared.events import Change
from shared.fairshare import EXTERNAL_LANE, Admitted, FairShare, rq_lane
from shared.kinds import JobKind
from shared.kinds.bulk import BULK_KIND
from shared.kinds.policy import DEFAULT_PRIORITY, PRIORITIES
from shared.pause import KindPause
from shared.position import record_durations
from shared.priority import external_of_lane, lane_of, rq_queue_name, rq_queue_of_lane
from shared.protocol import (
    CANCELLABLE_STATES,
    CANCELLED,
    FAILED,
    QUEUED,
    RELEASE_JOB,
    RETRYABLE_STATES,
    RUN_KIND_JOB,
    RUNNING,
    SCHEDULED,
    WAITING,
    ProgressUpdate,
    is_uuid,
    new_id,
)
from shared.push import Pusher
from shared.quotas import Quotas, Usage, bucket_of, quota_tenants, tenant_fields
from shared.retries import Retries
from shared.rqconf import SERIALIZER, rq_queue
from shared.signing import sign_job_token
from shared.store import (
    Applied,
    InvalidTransition,
    JobState,
    JobStore,
    UnknownJob,
    UpdateAnswer,
)
from shared.unique import DEDUPLICATED, STORE_GRACE, UniqueKeys, unique_key
from shared.uploads import UploadStore, drop_when_ended, upload_bytes, uploads_of

log = logging.getLogger(__name__)
Reaction = Callable[[list[Change]], object]
# RQ states in which the job may still run: a retry waits until they are over.
RQ_ACTIVE = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED,
             JobStatus.SCHEDULED, JobStatus.CREATED}
ENQUEUE_CHUNK = 500


class Lifecycle:
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
        # (A job's end lets the jobs waiting for it go first: their start is the latency.)
        self.reactions: list[Reaction] = [pusher.push, self._end_waits, self._free_places,
                                          self._free_slots, self._complete_batches,
                                          self._hand_over_webhooks,
                                          drop_when_ended(self.uploads, kinds),
                                          self.retries.schedule, self._release_unique,
                                          self._record_durations]

    def add_reaction(self, reaction: Reaction) -> None:
        """Run ``reaction`` on every change from now on (after the built-in ones)."""
        self.reactions.append(reaction)

    def kind(self, name: str) -> JobKind:
        """The kind ``name``; :class:`NotFound` for one this site does not declare."""
        found = self.kinds.get(name)
        if found is None:
            raise NotFound(f"unknown kind {name[:40]!r}", {"kind": "is not a kind of this site"})
        return found

    # -- starting ---------------------------------------------------------------
    @tracing.traced("jobcast.enqueue")  # the job's trace context is this span's (carrier)
    def start(self, kind: JobKind | str, args: dict[str, Any], *, owner: str = "",
              webhook: str | None = None, run_at: datetime | None = None,
              fields: dict[str, str] | None = None, job_id: str | None = None,
              at_front: bool = False, room: bool = True, tenant: str = "",
              address: str = "", quota: bool = True, after: Sequence[str] = (),
              priority: str | None = None) -> JobState:
        """Store one job of ``kind`` with checked ``args`` and hand it over; its state.

        ``owner`` is recorded and indexed; ``webhook`` (a checked URL) is called when
        it ends; ``run_at`` (UTC) keeps it ``scheduled`` until then; ``fields`` are
        stored on it too; ``at_front`` puts it first in RQ's queue (the site's own
        bulk jobs); ``room`` checks the store's caps first (the site's requests);
        ``tenant`` is who the job counts against for quotas and fair share
        (:mod:`shared.apikeys` names the forms; '' for the site's own jobs), and for
        a session tenant ``address`` (its client's ``a-…``) pays too; ``quota``
        checks and takes their quotas (:class:`~shared.quotas.QuotaReached`), False
        when the caller took them already (a snippet, a batch's ``onComplete``).
        ``after``: ids of stored jobs it waits for, ``waiting`` (``shared/after.py``).

        A kind with ``unique`` arguments (``shared/unique.py``): when a job of the kind
        with the same values has not ended, nothing is stored (nor counted) and that
        job's state is returned, marked ``extra["deduplicated"]``. ``priority``
        (checked by the caller; None: the kind's) picks its queue.
        """
        spec = kind if isinstance(kind, JobKind) else self.kind(kind)
        priority = priority or spec.policy.priority
        if run_at is not None and self.limits.limited(spec.name):
            # Not yet: RQ's scheduler would queue it at its time past the limit.
            raise Invalid(f"kind {spec.name!r} has a concurrency limit: it cannot be delayed "
                          "(runAt, delaySeconds) yet", {"runAt": "not for a limited kind"})
        if room:
            self.capacity.ensure_room()
        job_id = job_id or new_id()
        after = self._checked_after(after, job_id, run_at)
        key = unique_key(spec, args)
        if key is not None:
            holder = self.unique.claim(key, job_id)
            if holder != job_id:
                return self.deduplicated(holder)
        extra = {**self._fields(spec, args, webhook), **self._watch_fields(spec),
                 **(fields or {}), **self._flow_fields(spec, key, after), **tracing.carrier()}
        tracing.annotate(job_id=job_id, kind=spec.name)
        tenants = quota_tenants(tenant, address)
        uploads = {} if spec.external else uploads_of(spec.uploads, args)
        bucket = None
        try:
            if quota and tenants:
                now = time.time()
                self.quotas.take(self.quotas.payers(tenant, address), Usage(
                    jobs=1, job_bytes=len(extra["args"].encode()) + upload_bytes(uploads)),
                    now)
                bucket = bucket_of(now + self.cfg.JOB_TTL)
            extra.update(tenant_fields(tenant, tenants))
            extra["priority"] = priority
            if run_at is not None:
                extra["run_at"] = repr(run_at.timestamp())
            if uploads:
                self.uploads.put(job_id, uploads, tenants, bucket)
            state = self.store.create(job_id, spec.name, owner, SCHEDULED if run_at else (
                WAITING if after else QUEUED), **extra)
        except (redis.RedisError, JobcastError):
            if key is not None:
                self.unique.give_back(key, job_id)
            raise
        try:
            self._hand_over(spec, [(job_id, args)], tenant=tenant, run_at=run_at,
                            at_front=at_front, admit=not after, priority=priority)
        except redis.RedisError:
            self._not_queued(job_id)
            raise
        log.info("job %s started (%s%s)", job_id, spec.name,
                 ", external" if spec.external else "")
        if self.limits.limited(spec.name):  # held by its concurrency limit: its page says so
            state = self.store.get(job_id) or state
        self.changed([state], created=True)
        if after:
            self._settle(self.waits.register([job_id], after))
            return self.store.get(job_id) or state
        return state

    def _checked_after(self, after: Sequence[str], job_id: str,
                       run_at: datetime | None = None) -> tuple[str, ...]:
        """``after`` checked (``shared.after.check_after``), every id a stored job;
        :class:`Invalid` naming ``after``."""
        if not after:
            return ()
        ids = check_after(list(after), job_id)
        if run_at is not None:
            raise Invalid("give after or runAt/delaySeconds, not both",
                          {"after": "not with runAt or delaySeconds"})
        missing = self.waits.missing(ids)
        if missing:
            raise Invalid(f"after names an unknown job: {missing[0]}",
                          {"after": f"unknown job {missing[0]}"})
        return ids

    @staticmethod
    def _flow_fields(kind: JobKind, key: str | None, after: Sequence[str]) -> dict[str, str]:
        """The fields a job stores for its unique key and the jobs it waits for."""
        fields = {"unique_key": key} if key else {}
        if after:
            fields.update(after=" ".join(after), waiting_for=" ".join(after))
            if kind.policy.after_failure == "run":
                fields["after_failure"] = "run"
        return fields

    def deduplicated(self, holder: str) -> JobState:
        """The state of ``holder``, the job a start found with the same unique key,
        marked ``extra["deduplicated"]``; a holder still being stored is waited for
        (at most ``STORE_GRACE`` seconds; :class:`Conflict` after)."""
        deadline = time.monotonic() + STORE_GRACE
        while (state := self.store.get(holder)) is None:
            if time.monotonic() > deadline:
                raise Conflict("a job with the same unique arguments is being started; "
                               "try again in a moment")
            time.sleep(0.01)  # the other start stores it within milliseconds
        state.extra[DEDUPLICATED] = "1"
        log.info("start deduplicated: job %s (%s) has the same unique arguments",
                 holder, state.kind)
        return state

    @tracing.traced("jobcast.enqueue")
    def start_batch(self, kind: JobKind, items: list[dict[str, Any]], *, owner: str = "",
                    on_complete: dict[str, Any] | None = None, tenant: str = "",
                    address: str = "", after: Sequence[str] = (),
                    deduplicated: dict[int, str] | None = None,
                    priority: str | None = None) -> tuple[str, list[str]]:
        """Store a batch of ``kind`` jobs (one per checked ``items`` entry) and hand them
        over; the batch id and the children's ids. ``tenant``, ``address`` and ``after``:
        as for :meth:`start` (``after`` for every child); the batch counts one job per
        item it stores (and one for its ``onComplete``) and its items against the
        tenant's batch rate, before anything is stored.

        Items of a ``unique`` kind whose key a job not yet ended holds, or an earlier
        item of the batch, are not stored: ``deduplicated`` (when given) gets their
        index and that job's id. When every item is deduplicated, no batch is
        stored: ``("", [])``.
        """
        if kind.uploads:
            raise Invalid(f"a batch cannot start jobs with uploads ({kind.name})",
                          {"kind": "has uploads"})
        self.capacity.ensure_room()
        priority = priority or kind.policy.priority
        after = self._checked_after(after, "")
        ids = [new_id() for _ in items]
        found: dict[int, str] = {}
        taken = self._claim_keys(kind, items, ids, found)
        if deduplicated is not None:
            deduplicated.update(found)
        kept = [i for i in range(len(items)) if i not in found]
        if not kept:
            return "", []
        items, ids = [items[i] for i in kept], [ids[i] for i in kept]
        tenants = quota_tenants(tenant, address)
        try:
            if tenants:
                sizes = sum(len(json.dumps(item, ensure_ascii=False).encode())
                            for item in items)
                self.quotas.take(self.quotas.payers(tenant, address), Usage(
                    jobs=len(items) + (1 if on_complete else 0), job_bytes=sizes,
                    batch_items=len(items)))
            child_fields = {**self._fields(kind, {}, None), **self._watch_fields(kind),
                            **self._flow_fields(kind, None, after),
                            **tenant_fields(tenant, tenants), "priority": priority,
                            **tracing.carrier()}
            batch_id, ids = batches.create_batch(
                self.store, kind.name, items, owner=owner, on_complete=on_complete,
                child_fields=child_fields, tenant=tenant, address=address, ids=ids,
                initial=WAITING if after else QUEUED,
                child_extra=[{"unique_key": taken[job_id]} if job_id in taken else {}
                             for job_id in ids])
        except (redis.RedisError, JobcastError):
            for job_id, key in taken.items():
                self.unique.give_back(key, job_id)
            raise
        self._hand_over(kind, list(zip(ids, items, strict=True)), tenant=tenant,
                        admit=not after, priority=priority)
        log.info("batch %s: %s jobs of %s started", batch_id, len(ids), kind.name)
        if after:
            self._settle(self.waits.register(ids, after))
        return batch_id, ids

    def _claim_keys(self, kind: JobKind, items: list[dict[str, Any]], ids: list[str],
                    found: dict[int, str]) -> dict[str, str]:
        """Take the unique keys of a batch's items (the first item of each key takes
        it); the ids that took one -> its key. ``found`` gets each other item's index
        and the id holding its key."""
        if not kind.policy.unique:
            return {}
        item_keys = [unique_key(kind, args) or "" for args in items]
        firsts: dict[str, str] = {}
        for key, job_id in zip(item_keys, ids, strict=True):
            firsts.setdefault(key, job_id)
        holders = dict(zip(firsts, self.unique.claim_many(list(firsts.items())), strict=True))
        taken = {}
        for i, (key, job_id) in enumerate(zip(item_keys, ids, strict=True)):
            if holders[key] == job_id:
                taken[job_id] = key
            else:
                found[i] = holders[key]
        return taken

    def release(self, job_id: str, kind: str) -> None:
        """A scheduled job of an external kind is due: it joins its kind's queue, in its
        tenant's turn (RQ's scheduler runs this as ``RELEASE_JOB`` at its time)."""
        try:  # due: queued from now on, so that a worker may claim it
            due = self.store.apply(ProgressUpdate(job_id=job_id, progress=0, state=QUEUED,
                                                  message="waiting for a worker to claim it"))
        except UnknownJob:
            log.info("job %s is gone: not released", job_id)
            return
        if due.current != QUEUED:  # cancelled meanwhile: nothing to queue
            log.info("job %s is %s: not released", job_id, due.current)
            return
        if due.state is not None:
            self.changed([due.state])
        tenant, priority = self.client.hmget(keys.job_key(job_id), ["tenant", "priority"])
        self._admit_external(kind, str(tenant or ""), [job_id], str(priority or ""))

    def left_queue(self, job_id: str) -> None:
        """A worker took ``job_id`` off its queue (the runner says so first thing): its
        tenant's next held job takes its place (``shared/fairshare.py``)."""
        self._queue_admitted(self.fair.release(job_id))

    @staticmethod
    def _fields(kind: JobKind, args: dict[str, Any], webhook: str | None) -> dict[str, str]:
        """What a new job of ``kind`` stores besides its state: its arguments as shown
        (an upload by its size), its webhook, and an external job's first attempt."""
        shown = {name: (f"<upload, {len(value)} characters>" if name in kind.uploads
                        and isinstance(value, str) else value) for name, value in args.items()}
        fields = {"args": json.dumps(shown, ensure_ascii=False)}
        if webhook:
            fields.update(webhook=webhook, webhook_state="pending")
        if kind.external:
            fields.update(external="1", attempt="1")
        if kind.policy.retries:  # what shared/lua/lib/retry.lua reads
            backoff = kind.policy.backoff
            fields.update(max_attempts=str(kind.policy.max_attempts),
                          backoff=backoff if isinstance(backoff, str) else json.dumps(backoff))
        return fields

    def _watch_fields(self, kind: JobKind) -> dict[str, str]:
        """The stall watch's field of a new job of ``kind`` (``shared/watch.py``)."""
        return watch.watch_fields(kind.policy.stall_after, float(self.cfg.STALL_AFTER))

    def _hand_over(self, kind: JobKind, jobs: list[tuple[str, dict[str, Any]]], *,
                   tenant: str = "", run_at: datetime | None = None,
                   at_front: bool = False, admit: bool = True,
                   priority: str = DEFAULT_PRIORITY) -> None:
        """Queue stored jobs as their kind says, in their tenant's turn (fair share): RQ,
        or the external kind's queue, of their ``priority``. ``at_front`` (an operator's
        bulk job) skips the turn. A paused kind's RQ jobs are held back (shared/pause.py).
        Without ``admit`` (waiting jobs) RQ jobs are only saved: :meth:`_admit` queues them.
        """
        if kind.external and run_at is None:
            if not admit:
                return
            self._admit_external(kind.name, tenant,
                                 self._within_limit(kind, [job_id for job_id, _args in jobs]),
                                 priority)
            return
        queue = self.queues.get(priority, self.queue)
        if run_at is not None:  # one job, from a form or the API: RQ's scheduler queues it
            for job_id, args in jobs:
                function, job_args, kwargs, options = self._rq_call(kind, job_id, args)
                queue.enqueue_at(run_at, function, *job_args, **kwargs, **options)
            return
        created: dict[str, Job] = {}
        for start in range(0, len(jobs), ENQUEUE_CHUNK):  # saved first: a held job waits saved
            pipe = self.queue.connection.pipeline()
            for job_id, args in jobs[start:start + ENQUEUE_CHUNK]:
                function, job_args, kwargs, options = self._rq_call(kind, job_id, args)
                job = queue.create_job(
                    function, args=job_args, kwargs=kwargs, job_id=options["job_id"],
                    timeout=options["job_timeout"], result_ttl=options["result_ttl"],
                    failure_ttl=options["failure_ttl"], ttl=self.cfg.JOB_TTL,
                    status=JobStatus.CREATED)
                job.save(pipeline=pipe)
                created[job_id] = job
            pipe.execute()
        if not admit:
            return
        if at_front:
            self._enqueue([*created.values()], at_front=True, queue=queue)
            return
        held = self.pause.hold([*created], [kind.name] * len(created))  # its kind is paused
        self._queue_admitted(self.fair.admit(rq_lane(queue.name), tenant, self._within_limit(
            kind, [i for i in created if i not in held])), created)

    # -- concurrency limits (shared/concurrency.py) ---------------------------------
    def _within_limit(self, kind: JobKind, job_ids: list[str]) -> list[str]:
        """New jobs of ``kind`` ask for their slots before they take a place in their
        tenant's line; those of a full group are held (and take no place)."""
        if not self.limits.limited(kind.name):
            return job_ids
        gated = self.limits.gate(job_ids)
        self._let_through(gated.promoted)
        return gated.passed

    def _slots_for(self, job_ids: list[str]) -> list[str]:
        """Of the ids fair share let into one lane's queue, those that may go on: each
        job without a slot asks for one; a held one gives its place in the line back,
        and the tenant's next jobs in that line ask in turn."""
        passed: list[str] = []
        asking = job_ids
        while asking:
            gated = self.limits.gate(asking)
            passed.extend(gated.passed)
            self._let_through(gated.promoted)
            asking = []
            for job_id in gated.held:
                freed = self.fair.release(job_id)
                if freed is not None:
                    asking.extend([*freed.from_held, *freed.new])
        return passed

    def _let_through(self, promoted: list[Promoted]) -> None:
        """Held jobs that took freed slots join their queue in their tenant's turn; their
        pages stop saying they are held."""
        if not promoted:
            return
        lines: dict[tuple[str, str], list[str]] = {}
        priorities = [self.client.hget(keys.job_key(job.job_id), "priority")
                      for job in promoted]
        for job, priority in zip(promoted, priorities, strict=True):
            spec = self.kinds.get(job.kind)
            lane = lane_of(self.cfg.QUEUE_NAME, job.kind, spec is not None and spec.external,
                           str(priority or DEFAULT_PRIORITY))
            lines.setdefault((lane, job.tenant), []).append(job.job_id)
        for (lane, tenant), ids in lines.items():
            log.info("%s job(s) let through by their concurrency limit: %s", len(ids),
                     ", ".join(ids[:5]))
            self._queue_admitted(self.fair.admit(lane, tenant, ids))
        self.changed([s for s in self.store.get_many([j.job_id for j in promoted])
                      if s is not None])

    def _free_slots(self, changes: list[Change]) -> None:
        """A job of a limited kind that is no longer queued or running gives its slot
        back: the oldest held job of its group takes it (event-driven, no polling)."""
        ids = [c.state.job_id for c in changes if self.limits.limited(c.state.kind)
               and c.state.state not in (QUEUED, RUNNING)]
        if not ids:
            return
        try:
            self._let_through(self.limits.release(ids))
        except redis.RedisError as exc:  # healed by the next gate, release or heal
            log.warning("could not give concurrency slots back (%s): %s", ", ".join(ids), exc)

    def heal_slots(self) -> int:
        """Free slots whose jobs ended without giving them back, and let held jobs take
        them (the tick runs it now and then); how many jobs were let through."""
        promoted = self.limits.heal()
        self._let_through(promoted)
        return len(promoted)

    def _admit_external(self, kind: str, tenant: str, job_ids: list[str],
                        priority: str = DEFAULT_PRIORITY) -> None:
        self._queue_admitted(self.fair.admit(lane_of(self.cfg.QUEUE_NAME, kind, True,
                                                     priority or DEFAULT_PRIORITY),
                                             tenant, job_ids))

    def _queue_admitted(self, admitted: Admitted | None,
                        created: dict[str, Job] | None = None) -> None:
        """Put the jobs fair share let in on their lane's queue (RQ's, or an external
        kind's); ``created``: RQ jobs at hand (others are read from RQ). An RQ job of a
        paused kind is held back instead, and its place goes to its tenant's next job
        (a loop, not a recursion: a tenant may hold thousands)."""
        pending = [admitted]
        while pending:
            admitted = pending.pop()
            if admitted is None or not (admitted.from_held or admitted.new):
                continue
            ids = [*admitted.from_held, *admitted.new]
            if self.limits.active and not (admitted.lane.startswith(EXTERNAL_LANE) and not
                                           self.limits.limited(
                                               external_of_lane(admitted.lane)[0])):
                ids = self._slots_for(ids)
            if admitted.lane.startswith(EXTERNAL_LANE):
                kind, priority = external_of_lane(admitted.lane)
                self.external.push_many(ids, kind, priority)
                continue
            queue = self._queue_named(rq_queue_of_lane(admitted.lane))
            jobs: list[Job] = []
            for job_id in ids:
                job = (created or {}).get(job_id) or queue.fetch_job(job_id)
                if job is None:  # its RQ job expired while held: never leave it "queued"
                    log.warning("job %s: its RQ job is gone; it cannot run", job_id)
                    self._not_queued(job_id)
                else:
                    jobs.append(job)
            held = self.pause.hold([job.id for job in jobs],
                                   [str(job.kwargs.get("kind_name", "")) for job in jobs])
            self._enqueue([job for job in jobs if job.id not in held], queue=queue)
            pending.extend(self.fair.release(job_id) for job_id in held)

    def _queue_named(self, name: str) -> Queue:
        """The RQ queue ``name`` (one of the priorities'; any other is built)."""
        return next((q for q in self.queues.values() if q.name == name), None) or rq_queue(
            name, self.queue.connection)

    def _enqueue(self, jobs: list[Job], at_front: bool = False,
                 queue: Queue | None = None) -> None:
        queue = queue or self.queue
        for start in range(0, len(jobs), ENQUEUE_CHUNK):
            pipe = queue.connection.pipeline()
            for job in jobs[start:start + ENQUEUE_CHUNK]:
                queue.enqueue_job(job, pipeline=pipe, at_front=at_front)
            pipe.execute()

    def _rq_call(self, kind: JobKind, job_id: str, args: dict[str, Any]
                 ) -> tuple[str, tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        """(function, args, kwargs, options) of the RQ job that runs (or releases) a job."""
        cfg = self.cfg
        options = {"job_id": job_id, "job_timeout": kind.timeout or cfg.JOB_TIMEOUT,
                   "result_ttl": cfg.JOB_TTL, "failure_ttl": cfg.JOB_TTL}
        if kind.external:  # only when it waits for run_at: then it joins its kind's queue
            return RELEASE_JOB, (job_id, kind.name), {}, options
        # Without SECRET_KEY (a worker starting an onComplete) the job reports with the
        # shared PROGRESS_TOKEN: no token here makes the runner use it.
        token = sign_job_token(cfg.SECRET_KEY, job_id) if cfg.SECRET_KEY else None
        uploads = uploads_of(kind.uploads, args)  # stored apart (start): RQ names them only
        kwargs: dict[str, Any] = {"token": token, "kind_name": kind.name,
                  "kind_args": {name: value for name, value in args.items()
                                if name not in uploads}}
        if uploads:
            kwargs["uploads"] = sorted(uploads)
        return RUN_KIND_JOB, (job_id,), kwargs, options

    def _not_queued(self, job_id: str) -> None:
        """Never leave a job "queued" that no worker will ever see: fail it, or (when
        even that fails: Redis is full) delete it."""
        try:
            self.store.finish(job_id, FAILED, "The job could not be queued; try again.")
        except redis.RedisError as exc:
            log.warning("job %s: could not record the failure to queue it: %s", job_id, exc)
            try:
                self.store.discard(job_id)
            except redis.RedisError as again:
                log.warning("job %s: could not discard it either: %s", job_id, again)

    # -- changing ---------------------------------------------------------------
    def report(self, update: ProgressUpdate, attempt: int | None = None,
               now: float | None = None) -> Applied:
        """Apply one progress report of ``attempt`` (None or 0: any); the stored state
        (None when it was dropped) and the name of the job's state. Raises
        :class:`~shared.store.UnknownJob` and :class:`~shared.store.StaleAttempt`."""
        stamp = time.time() if now is None else now
        applied = self.store.apply(update, stamp, attempt)
        if applied.state is not None:
            self.changed([applied.state], at=stamp)
        return applied

    def report_many(self, updates: list[tuple[ProgressUpdate, int | None]],
                    now: float | None = None) -> list[UpdateAnswer]:
        """:meth:`report` for each ``(update, attempt)``, in one round trip; each answer
        is what :meth:`report` returns, or the error it would raise."""
        stamp = time.time() if now is None else now
        answers = self.store.apply_many(updates, now=stamp)
        self.changed([answer.state for answer in answers
                      if isinstance(answer, Applied) and answer.state is not None], at=stamp)
        return answers

    def claim(self, kinds: list[str], worker: str) -> Claim | None:
        """Give the oldest waiting job of ``kinds`` to ``worker`` (None: none waits);
        lapsed leases are swept first, when there are some. Paused kinds are skipped."""
        paused = self.pause.paused()
        kinds = [kind for kind in kinds if kind not in paused]
        if not kinds:
            return None
        got = self.external.claim(kinds, worker)
        if isinstance(got, LeasesLapsed):
            self.sweep()
            got = self.external.claim(kinds, worker, check_leases=False)
        if not isinstance(got, Claim):
            return None
        log.info("job %s (%s) claimed by %s, attempt %s", got.job_id, got.kind, worker,
                 got.attempt)
        self.left_queue(got.job_id)
        self.changed([got.state])
        return got

    def sweep(self) -> int:
        """Requeue (or fail, on their last attempt) the jobs whose lease lapsed; how many.

        One sweep at a time per process: a caller that finds one running goes on at
        once, instead of sweeping beside it (a fleet of workers gone at once would
        otherwise have every waiting claim and heartbeat sweep together).
        """
        if not self._sweeping.acquire(blocking=False):
            return 0
        try:
            swept = self.external.sweep()
        finally:
            self._sweeping.release()
        for job_id in swept.requeued:
            log.info("job %s: lease lapsed, queued again", job_id)
        for job_id in swept.failed:
            log.info("job %s: lease lapsed on its last attempt, failed", job_id)
        for job_id in swept.retried:
            log.info("job %s: lease lapsed, a failed attempt: retried after its backoff", job_id)
        states = [s for s in self.store.get_many(list(swept.changed)) if s is not None]
        for state in states:
            if state.job_id in swept.batch_done:
                state.extra["batch_done"] = "1"
        self.changed(states)
        return len(states)

    def current(self, job_id: str) -> JobState:
        """The job's state; :class:`~shared.store.UnknownJob` for an unknown id."""
        state = self.store.get(job_id.lower()) if is_uuid(job_id) else None
        if state is None:
            raise UnknownJob(job_id)
        return state

    def cancel(self, job_id: str) -> JobState:
        """Cancel a scheduled, waiting, queued or running job; its new state: cancelled, or for
        a running job still running, asked to stop (``cancel_requested``: the worker
        stops within ``CANCEL_GRACE`` seconds, or is stopped by force; ``shared/watch.py``).

        The store decides first, atomically: a late report of the worker (even a
        ``failed`` from a killed work horse) is then dropped by the terminal-state
        rule. Then RQ drops the queued job, or the worker running it is told to stop;
        an external worker learns it from its next report or heartbeat.
        """
        job = self.current(job_id)
        if job.state not in CANCELLABLE_STATES:
            raise Conflict(f"the job is {job.state}: only a scheduled, waiting, queued or "
                           "running job can be cancelled")
        if job.state == RUNNING:
            asked = watch.ask_to_stop(self, job)
            if asked is not None:
                return asked
        cancelled = self.store.finish(job.job_id, CANCELLED, "cancelled on request")
        if cancelled is None:  # it ended in the meantime
            raise Conflict(f"the job is {self.current(job.job_id).state}: it has already ended")
        if job.extra.get("external") != "1":
            self.stop_in_rq(job.job_id)
        log.info("job %s cancelled (was %s)", job.job_id, job.state)
        self.changed([cancelled])
        return cancelled

    def stop_in_rq(self, job_id: str) -> None:
        """Take the job off RQ's queue, or tell the worker running it to stop."""
        conn = self.queue.connection
        try:
            rq_job = Job.fetch(job_id, connection=conn, serializer=SERIALIZER)
            status = rq_job.get_status(refresh=False)
            if status == JobStatus.STARTED:
                send_stop_job_command(conn, job_id, serializer=SERIALIZER)
                log.info("job %s: stop-job sent to worker %s", job_id, rq_job.worker_name)
            elif status in RQ_ACTIVE:
                rq_job.cancel()
        except NoSuchJobError:
            log.info("job %s: no RQ job left to stop", job_id)
        except InvalidJobOperation as exc:  # it moved on meanwhile; the store rules anyway
            log.info("job %s: RQ could not stop it (%s); its reports are dropped", job_id, exc)

    def retry(self, job_id: str) -> JobState:
        """Run a failed or cancelled job again, as a new attempt (its callback token is
        new; the old one gets 409 from then on); its new (queued) state. A job whose
        kind retries gets its retries again from this attempt on."""
        job = self.current(job_id)
        if job.state not in RETRYABLE_STATES:
            raise Conflict(f"the job is {job.state}: only a failed or cancelled job can be "
                           "retried")
        if job.extra.get("external") == "1":
            state = self._reset(job)
            self._admit_external(state.kind, job.extra.get("tenant", ""), [state.job_id],
                                 job.extra.get("priority", DEFAULT_PRIORITY))
        else:
            state = self._retry_in_rq(job)
        log.info("job %s retried (attempt %s, was %s)", job.job_id, state.attempt, job.state)
        self.changed([state])
        return state

    def _reset(self, job: JobState) -> JobState:
        try:
            state = self.store.reset(job.job_id, RETRYABLE_STATES)
        except InvalidTransition as exc:
            raise Conflict(f"the job is {exc.state}: only a failed or cancelled job can be "
                           "retried") from None
        kind = self.kinds.get(job.kind)
        if kind is not None and kind.policy.retries and "max_attempts" in job.extra:
            # A manual retry starts a new round of the kind's retries (before it is queued).
            most = str(state.attempt + kind.policy.retries)
            self.client.hset(keys.job_key(job.job_id), "max_attempts", most)
            state.extra["max_attempts"] = most
        return state

    def _retry_in_rq(self, job: JobState) -> JobState:
        """Enqueue the same RQ call again (its arguments are RQ's; an upload it names
        must still be stored, and is kept another ``JOB_TTL``), with a token for the
        new attempt."""
        if not self.cfg.SECRET_KEY:
            raise Conflict("a retry here needs SECRET_KEY (to sign the new attempt's token)")
        try:
            rq_job = Job.fetch(job.job_id, connection=self.queue.connection,
                               serializer=SERIALIZER)
        except NoSuchJobError:
            raise Conflict("the job can no longer be retried: its queue entry has "
                           "expired") from None
        if rq_job.get_status(refresh=False) in RQ_ACTIVE:
            raise Conflict("the job is still stopping on its worker; try again in a moment")
        if not rq_job.func_name:
            raise Conflict("the job can no longer be retried: its function is unknown")
        if rq_job.kwargs.get("uploads") and not self.uploads.renew(job.job_id):
            raise Conflict("the job can no longer be retried: its upload was deleted when "
                           "it was cancelled (or has expired); start a new job with the file")
        state = self._reset(job)
        self.run_again(rq_job, state.attempt, job.extra.get("tenant", ""))
        return state

    def run_again(self, rq_job: Job, attempt: int, tenant: str) -> None:
        """Enqueue ``rq_job``'s call again as ``attempt``, with that attempt's token (the
        shared one without SECRET_KEY), in its tenant's turn (fair share)."""
        kwargs = rq_job.kwargs
        if "token" in kwargs:
            kwargs = {**kwargs, "token": (sign_job_token(self.cfg.SECRET_KEY, rq_job.id, attempt)
                                          if self.cfg.SECRET_KEY else None)}
        rq_job.delete(remove_from_queue=True)
        queue = self._queue_named(rq_job.origin or self.queue.name)  # its priority's
        again = queue.create_job(rq_job.func_name or RUN_KIND_JOB, args=rq_job.args,
                                 kwargs=kwargs, job_id=rq_job.id,
                                 timeout=int(rq_job.timeout or self.cfg.JOB_TIMEOUT),
                                 result_ttl=self.cfg.JOB_TTL, failure_ttl=self.cfg.JOB_TTL,
                                 ttl=self.cfg.JOB_TTL, status=JobStatus.CREATED)
        again.save()
        self._queue_admitted(self.fair.admit(rq_lane(queue.name), tenant, [rq_job.id]),
                             {rq_job.id: again})

    def release_retry(self, job_id: str, attempt: int) -> JobState | None:
        """A retried job's next ``attempt`` is due (``RETRY_JOB``): it joins its queue in
        its tenant's turn (:meth:`shared.retries.Retries.release`)."""
        return self.retries.release(job_id, attempt)

    def cancel_batch(self, batch_id: str) -> tuple[JobState, bool]:
        """Cancel every child of a batch not yet final, with one bulk job (in the site's
        own turn, never ahead of other tenants); that job's state, and True when this
        call started it. While one runs (or after it succeeded) a call starts nothing."""
        reserved = new_id()
        current = batches.claim_cancel(self.client, batch_id, reserved)
        if current != reserved:
            state = self.store.get(current)
            if state is not None and state.state not in (FAILED, CANCELLED):
                return state, False
            if not batches.replace_cancel(self.client, batch_id, current, reserved):
                return self.current(batches.cancel_job(self.client, batch_id)), False
        job = self.start(BULK_KIND, {"action": "cancel", "batch": batch_id},
                         owner=f"batch:{batch_id}", job_id=reserved,
                         tenant=batch_tenant(batch_id), quota=False)
        return job, True

    # -- pause (shared/pause.py) ---------------------------------------------------
    def pause_kind(self, name: str) -> bool:
        """Pause the kind ``name``: its running jobs finish, the others wait; False when it
        was paused already."""
        paused = self.pause.pause(self.kind(name).name)
        log.info("kind %s paused%s", name, "" if paused else " (it was already)")
        return paused

    def resume_kind(self, name: str) -> int:
        """Resume the kind ``name``: its held RQ jobs go back to fair share, oldest first,
        in chunks (an external kind's never left its queues: its waiting claims are
        woken); how many."""
        spec = self.kind(name)
        kind = spec.name
        self.pause.unpause(kind)
        if spec.external:  # wake the claims waiting for it (they skipped it while paused)
            self.client.publish(keys.EXTERNAL_CHANNEL, kind)
        resumed = 0
        while ids := self.pause.take(kind, ENQUEUE_CHUNK):
            created: dict[str, Job] = {}
            lanes: dict[tuple[str, str], list[str]] = {}  # (queue, tenant) -> ids, in order
            # Oldest first: a job handed back by a worker was held after newer ones.
            for state in sorted((s for s in self.store.get_many(ids) if s is not None),
                                key=lambda s: s.created_at):
                if state.state != QUEUED:
                    continue
                job = self._rq_job_again(state.job_id)
                if job is None:
                    self._not_queued(state.job_id)
                    continue
                created[state.job_id] = job
                lanes.setdefault((job.origin, state.extra.get("tenant", "")), []).append(
                    state.job_id)
            for (queue_name, tenant), lane_ids in lanes.items():
                self._queue_admitted(self.fair.admit(rq_lane(queue_name), tenant, lane_ids),
                                     created)
            resumed += len(created)
        log.info("kind %s resumed: %s held jobs queued again", kind, resumed)
        return resumed

    def held_back(self, job_id: str, kind: str) -> bool:
        """A worker took ``job_id`` of ``kind`` off RQ's queue: True when its kind is paused,
        and then it is held back, unrun, until the kind is resumed (``run_kind``)."""
        return bool(self.pause.hold([job_id], [kind]))

    def _rq_job_again(self, job_id: str) -> Job | None:
        """The held job's RQ job, saved and ready to queue: as it is when it never ran,
        made again (same call, same queue) when a worker handed it back; None when gone."""
        try:
            rq_job = Job.fetch(job_id, connection=self.queue.connection, serializer=SERIALIZER)
        except NoSuchJobError:
            return None
        if rq_job.get_status(refresh=False) == JobStatus.CREATED:
            return rq_job
        queue = self._queue_named(rq_job.origin or self.queue.name)
        function, args, kwargs = rq_job.func_name, rq_job.args, rq_job.kwargs
        if not function:
            return None
        rq_job.delete(remove_from_queue=True)
        again = queue.create_job(function, args=args, kwargs=kwargs, job_id=job_id,
                                 timeout=int(rq_job.timeout or self.cfg.JOB_TIMEOUT),
                                 result_ttl=self.cfg.JOB_TTL, failure_ttl=self.cfg.JOB_TTL,
                                 ttl=self.cfg.JOB_TTL, status=JobStatus.CREATED)
        again.save()
        return again

    # -- reacting ---------------------------------------------------------------
    def changed(self, states: Iterable[JobState], at: float | None = None,
                created: bool = False) -> None:
        """Run every reaction on the states changes stored (in order)."""
        stamp = time.time() if at is None else at
        changes = [Change(state, state.created_at if created else stamp, created)
                   for state in states]
        if not changes:
            return
        for reaction in self.reactions:
            reaction(changes)

    def _free_places(self, changes: list[Change]) -> None:
        """An ended job gives up its place in its lane's queue, if it held one (it was
        cancelled or failed there): its tenant's next held job takes it."""
        for change in changes:
            if change.state.finished:
                try:
                    self._queue_admitted(self.fair.release(change.state.job_id))
                except redis.RedisError as exc:
                    log.warning("job %s: could not give up its place: %s",
                                change.state.job_id, exc)

    def _complete_batches(self, changes: list[Change]) -> None:
        """The one change that ended a batch's last child starts its ``onComplete``."""
        for change in changes:
            batch_id = change.state.extra.get("batch_id")
            if not batch_id or change.state.extra.get("batch_done") != "1":
                continue
            try:
                then = batches.on_complete(self.client, batch_id)
                if then is not None:  # its quota was taken with the batch's
                    tenant, address = batches.batch_tenant(self.client, batch_id)
                    job = self.start(then["kind"], then["args"], owner=f"batch:{batch_id}",
                                     room=False, tenant=tenant, address=address, quota=False)
                    batches.complete(self.client, batch_id, job.job_id)
            except (NotFound, redis.RedisError) as exc:
                log.warning("batch %s: could not start its onComplete: %s", batch_id, exc)

    def _hand_over_webhooks(self, changes: list[Change]) -> None:
        """An ended job that names a webhook gets its delivery enqueued, once, on the
        webhooks' queue; its RQ job timeout is the delivery's deadline."""
        for change in changes:
            if not change.state.finished:
                continue
            job_id = change.state.job_id
            try:
                delivery = webhooks.claim_delivery(self.client, job_id)
                if delivery is not None:
                    intervals = list(self.cfg.WEBHOOK_BACKOFF)
                    self.webhook_queue.enqueue(
                        webhooks.DELIVER_JOB, job_id, delivery,
                        job_timeout=self.cfg.WEBHOOK_DEADLINE,
                        retry=Retry(max=len(intervals), interval=intervals),
                        result_ttl=self.cfg.JOB_TTL, failure_ttl=self.cfg.JOB_TTL)
                    log.info("job %s: webhook delivery %s enqueued", job_id, delivery)
            except redis.RedisError as exc:
                log.warning("job %s: could not enqueue its webhook: %s", job_id, exc)

    def _end_waits(self, changes: list[Change]) -> None:
        """Jobs that ended let the jobs waiting for them go on (``shared/after.py``)."""
        ended = [(change.state.job_id, change.state.state) for change in changes
                 if change.state.finished]
        if not ended:
            return
        try:
            settled = self.waits.ended(ended)
        except redis.RedisError as exc:
            log.warning("could not tell the jobs waiting for %s: %s", ended[0][0], exc)
            return
        self._settle(settled)

    def _settle(self, settled: list[Settled]) -> None:
        """Waiting jobs that changed: each change is pushed and reacted to; then a
        ready one is handed over in its tenant's turn, a cancelled one's RQ job dropped."""
        if not settled:
            return
        outcomes = {item.job_id: item for item in settled}
        states = [state for state in self.store.get_many(list(outcomes)) if state is not None]
        for state in states:
            item = outcomes[state.job_id]
            if item.outcome == CANCELLED_NOW:
                log.info("job %s cancelled: %s", state.job_id, state.message)
                if item.batch_done:
                    state.extra["batch_done"] = "1"
                if state.extra.get("external") != "1":
                    self.stop_in_rq(state.job_id)
        self.changed(states)
        for state in states:
            if outcomes[state.job_id].outcome == READY:
                log.info("job %s: the jobs it waited for have ended; queued", state.job_id)
                self._admit(state)

    def _admit(self, state: JobState) -> None:
        """Queue a job that waited, in its tenant's turn (its RQ job was saved)."""
        tenant = state.extra.get("tenant", "")
        kind = self.kinds.get(state.kind)
        ids = self._within_limit(kind, [state.job_id]) if kind is not None else [state.job_id]
        try:
            priority = state.extra.get("priority") or DEFAULT_PRIORITY
            if state.extra.get("external") == "1":
                self._admit_external(state.kind, tenant, ids, priority)
            else:
                queue = self.queues.get(priority, self.queue)
                held = self.pause.hold(ids, [state.kind] * len(ids))
                self._queue_admitted(self.fair.admit(rq_lane(queue.name), tenant,
                                                     [i for i in ids if i not in held]))
        except redis.RedisError as exc:
            log.warning("job %s: could not queue it: %s", state.job_id, exc)
            self._not_queued(state.job_id)

    def _release_unique(self, changes: list[Change]) -> None:
        """Ended jobs of kinds with ``unique`` arguments give up their keys."""
        ended = [change.state.job_id for change in changes if change.state.finished
                 and (kind := self.kinds.get(change.state.kind)) is not None
                 and kind.policy.unique]
        if ended:
            try:
                self.unique.release(ended)
            except redis.RedisError as exc:
                log.warning("job %s: could not give up its unique key: %s", ended[0], exc)

    def _record_durations(self, changes: list[Change]) -> None:
        """A job that succeeded adds its run time to its kind's recent durations (the
        ``eta`` of queued jobs, ``shared/position.py``)."""
        try:
            record_durations(self.client, changes)
        except redis.RedisError as exc:
            log.warning("could not record the jobs' durations: %s", exc)
