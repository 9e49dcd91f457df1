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
  ``onComplete`` and the bulk kind all start jobs through it.
* **Changing** (:meth:`report`, :meth:`report_many`, :meth:`claim`,
  :meth:`sweep`, :meth:`cancel`, :meth:`retry`): the store applies the change
  atomically (its Lua scripts), then :meth:`changed` runs every reaction on
  what was stored. A new reaction is added once (:meth:`add_reaction`): the
  push to watching pages (``shared/push.py``), a batch's ``onComplete``, the
  completion webhook, and whatever a feature adds (metrics).
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
from rq import Retry
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from shared import batches, keys, webhooks
from shared.after import CANCELLED_NOW, READY, Settled, Waits, check_after
from shared.apikeys import batch_tenant
from shared.capacity import Capacity
from shared.claimqueue import Claim, ExternalQueues, LeasesLapsed
from shared.errors import Conflict, Invalid, NotFound
from shared.events import Change
from shared.fairshare import EXTERNAL_LANE, Admitted, FairShare, external_lane, rq_lane
from shared.kinds import JobKind
from shared.kinds.bulk import BULK_KIND
from shared.protocol import (
    CANCELLABLE_STATES,
    CANCELLED,
    FAILED,
    QUEUED,
    RELEASE_JOB,
    RETRYABLE_STATES,
    RUN_KIND_JOB,
    SCHEDULED,
    WAITING,
    ProgressUpdate,
    is_uuid,
    new_id,
)
from shared.push import Pusher
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
        # Webhook deliveries on their own queue and worker: never behind, nor in, a user job.
        self.webhook_queue = rq_queue(webhooks.queue_name(cfg.QUEUE_NAME), raw)
        self.external = ExternalQueues(client, lease_seconds=cfg.LEASE_SECONDS,
                                       max_attempts=cfg.MAX_ATTEMPTS)
        self.capacity = Capacity(cfg, client)
        self.fair = FairShare(client, depth=cfg.FAIR_SHARE_DEPTH, ttl=cfg.JOB_TTL)
        self.waits = Waits(client, ttl=cfg.JOB_TTL)  # jobs started after others
        self.unique = UniqueKeys(client, ttl=cfg.JOB_TTL)  # kinds' unique keys
        self._sweeping = threading.Lock()  # one sweep at a time in this process
        # (A job's end lets the jobs waiting for it go first: their start is the latency.)
        self.reactions: list[Reaction] = [pusher.push, self._end_waits, self._free_places,
                                          self._complete_batches, self._hand_over_webhooks,
                                          self._release_unique]

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
    def start(self, kind: JobKind | str, args: dict[str, Any], *, owner: str = "",
              webhook: str | None = None, run_at: datetime | None = None,
              fields: dict[str, str] | None = None, job_id: str | None = None,
              at_front: bool = False, room: bool = True, tenant: str = "",
              after: Sequence[str] = ()) -> JobState:
        """Store one job of ``kind`` with checked ``args`` and hand it over; its state.

        ``owner`` is recorded and indexed; ``webhook`` (a checked URL) is called when
        it ends; ``run_at`` (UTC) keeps it ``scheduled`` until then; ``fields`` are
        stored on it too; ``at_front`` puts it first in RQ's queue (the site's own
        bulk jobs); ``room`` checks the store's caps first (the site's requests);
        ``tenant`` is who the job counts against for quotas and fair share
        (:mod:`shared.apikeys` names the forms; '' for the site's own jobs).
        ``after``: ids of stored jobs it waits for, ``waiting`` (``shared/after.py``).

        A kind with ``unique`` arguments (``shared/unique.py``): when a job of the kind
        with the same values has not ended, nothing is stored and that job's state
        is returned, marked ``extra["deduplicated"]``.
        """
        spec = kind if isinstance(kind, JobKind) else self.kind(kind)
        if room:
            self.capacity.ensure_room()
        job_id = job_id or new_id()
        after = self._checked_after(after, job_id, run_at)
        key = unique_key(spec, args)
        if key is not None:
            holder = self.unique.claim(key, job_id)
            if holder != job_id:
                return self.deduplicated(holder)
        extra = {**self._fields(spec, args, webhook), **(fields or {}),
                 **self._flow_fields(spec, key, after)}
        if tenant:
            extra["tenant"] = tenant
        if run_at is not None:
            extra["run_at"] = repr(run_at.timestamp())
        try:
            state = self.store.create(job_id, spec.name, owner, SCHEDULED if run_at else (
                WAITING if after else QUEUED), **extra)
        except redis.RedisError:
            if key is not None:
                self.unique.give_back(key, job_id)
            raise
        try:
            self._hand_over(spec, [(job_id, args)], tenant=tenant, run_at=run_at,
                            at_front=at_front, admit=not after)
        except redis.RedisError:
            self._not_queued(job_id)
            raise
        log.info("job %s started (%s%s)", job_id, spec.name,
                 ", external" if spec.external else "")
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

    def start_batch(self, kind: JobKind, items: list[dict[str, Any]], *, owner: str = "",
                    on_complete: dict[str, Any] | None = None, tenant: str = "",
                    after: Sequence[str] = (), deduplicated: dict[int, str] | None = None
                    ) -> tuple[str, list[str]]:
        """Store a batch of ``kind`` jobs (one per checked ``items`` entry) and hand them
        over; the batch id and the children's ids. ``tenant``, ``after``: as for
        :meth:`start` (``after`` for every child).

        Items of a ``unique`` kind whose key a job not yet ended holds, or an earlier
        item of the batch, are not stored: ``deduplicated`` (when given) gets their
        index and that job's id. When every item is deduplicated, no batch is
        stored: ``("", [])``.
        """
        self.capacity.ensure_room()
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
        child_fields = {**self._fields(kind, {}, None), **self._flow_fields(kind, None, after)}
        if tenant:
            child_fields["tenant"] = tenant
        try:
            batch_id, ids = batches.create_batch(
                self.store, kind.name, items, owner=owner, on_complete=on_complete,
                child_fields=child_fields, ids=ids, initial=WAITING if after else QUEUED,
                child_extra=[{"unique_key": taken[job_id]} if job_id in taken else {}
                             for job_id in ids])
        except redis.RedisError:
            for job_id, key in taken.items():
                self.unique.give_back(key, job_id)
            raise
        self._hand_over(kind, list(zip(ids, items, strict=True)), tenant=tenant,
                        admit=not after)
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
        tenant = self.client.hget(keys.job_key(job_id), "tenant") or ""
        self._admit_external(kind, str(tenant), [job_id])

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
        return fields

    def _hand_over(self, kind: JobKind, jobs: list[tuple[str, dict[str, Any]]], *,
                   tenant: str = "", run_at: datetime | None = None,
                   at_front: bool = False, admit: bool = True) -> None:
        """Queue stored jobs as their kind says, in their tenant's turn (fair share): RQ,
        or the external kind's queue. ``at_front`` (an operator's bulk job) skips the turn.
        Without ``admit`` (waiting jobs) RQ jobs are only saved: :meth:`_admit` queues them.
        """
        if kind.external and run_at is None:
            if not admit:
                return
            self._admit_external(kind.name, tenant, [job_id for job_id, _args in jobs])
            return
        if run_at is not None:  # one job, from a form or the API: RQ's scheduler queues it
            for job_id, args in jobs:
                function, job_args, kwargs, options = self._rq_call(kind, job_id, args)
                self.queue.enqueue_at(run_at, function, *job_args, **kwargs, **options)
            return
        created: dict[str, Job] = {}
        for start in range(0, len(jobs), ENQUEUE_CHUNK):  # saved first: a held job waits saved
            pipe = self.queue.connection.pipeline()
            for job_id, args in jobs[start:start + ENQUEUE_CHUNK]:
                function, job_args, kwargs, options = self._rq_call(kind, job_id, args)
                job = self.queue.create_job(
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
            self._enqueue([*created.values()], at_front=True)
            return
        self._queue_admitted(self.fair.admit(rq_lane(self.queue.name), tenant, [*created]),
                             created)

    def _admit_external(self, kind: str, tenant: str, job_ids: list[str]) -> None:
        self._queue_admitted(self.fair.admit(external_lane(kind), tenant, job_ids))

    def _queue_admitted(self, admitted: Admitted | None,
                        created: dict[str, Job] | None = None) -> None:
        """Put the jobs fair share let in on their lane's queue (RQ's, or an external
        kind's); ``created``: RQ jobs at hand (others are read from RQ)."""
        if admitted is None or not (admitted.from_held or admitted.new):
            return
        ids = [*admitted.from_held, *admitted.new]
        if admitted.lane.startswith(EXTERNAL_LANE):
            self.external.push_many(ids, admitted.lane[len(EXTERNAL_LANE):])
            return
        jobs: list[Job] = []
        for job_id in ids:
            job = (created or {}).get(job_id) or self.queue.fetch_job(job_id)
            if job is None:  # its RQ job expired while held: never leave it "queued"
                log.warning("job %s: its RQ job is gone; it cannot run", job_id)
                self._not_queued(job_id)
            else:
                jobs.append(job)
        self._enqueue(jobs)

    def _enqueue(self, jobs: list[Job], at_front: bool = False) -> None:
        for start in range(0, len(jobs), ENQUEUE_CHUNK):
            pipe = self.queue.connection.pipeline()
            for job in jobs[start:start + ENQUEUE_CHUNK]:
                self.queue.enqueue_job(job, pipeline=pipe, at_front=at_front)
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
        return RUN_KIND_JOB, (job_id,), {"token": token, "kind_name": kind.name,
                                         "kind_args": args}, options

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
        lapsed leases are swept first, when there are some."""
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
        """Cancel a scheduled, waiting, queued or running job; its new (cancelled) state.

        The store decides first, atomically: a late report of the worker (even a
        ``failed`` from a killed work horse) is then dropped by the terminal-state
        rule. Then RQ drops the queued job, or the worker running it is told to stop;
        an external worker learns it from its next report or heartbeat.
        """
        job = self.current(job_id)
        if job.state not in CANCELLABLE_STATES:
            raise Conflict(f"the job is {job.state}: only a scheduled, waiting, queued or "
                           "running job can be cancelled")
        cancelled = self.store.finish(job.job_id, CANCELLED, "cancelled on request")
        if cancelled is None:  # it ended in the meantime
            raise Conflict(f"the job is {self.current(job.job_id).state}: it has already ended")
        if job.extra.get("external") != "1":
            self._stop_in_rq(job.job_id)
        log.info("job %s cancelled (was %s)", job.job_id, job.state)
        self.changed([cancelled])
        return cancelled

    def _stop_in_rq(self, job_id: str) -> None:
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
        new; the old one gets 409 from then on); its new (queued) state."""
        job = self.current(job_id)
        if job.state not in RETRYABLE_STATES:
            raise Conflict(f"the job is {job.state}: only a failed or cancelled job can be "
                           "retried")
        if job.extra.get("external") == "1":
            state = self._reset(job)
            self._admit_external(state.kind, job.extra.get("tenant", ""), [state.job_id])
        else:
            state = self._retry_in_rq(job)
        log.info("job %s retried (attempt %s, was %s)", job.job_id, state.attempt, job.state)
        self.changed([state])
        return state

    def _reset(self, job: JobState) -> JobState:
        try:
            return self.store.reset(job.job_id, RETRYABLE_STATES)
        except InvalidTransition as exc:
            raise Conflict(f"the job is {exc.state}: only a failed or cancelled job can be "
                           "retried") from None

    def _retry_in_rq(self, job: JobState) -> JobState:
        """Enqueue the same RQ call again (its arguments are RQ's: an upload is kept
        there only), with a token for the new attempt."""
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
        function, args, kwargs = rq_job.func_name, rq_job.args, rq_job.kwargs
        if not function:
            raise Conflict("the job can no longer be retried: its function is unknown")
        state = self._reset(job)
        if "token" in kwargs:
            kwargs = {**kwargs, "token": sign_job_token(self.cfg.SECRET_KEY, job.job_id,
                                                        state.attempt)}
        rq_job.delete(remove_from_queue=True)
        again = self.queue.create_job(function, args=args, kwargs=kwargs, job_id=job.job_id,
                                      timeout=int(rq_job.timeout or self.cfg.JOB_TIMEOUT),
                                      result_ttl=self.cfg.JOB_TTL, failure_ttl=self.cfg.JOB_TTL,
                                      ttl=self.cfg.JOB_TTL, status=JobStatus.CREATED)
        again.save()
        self._queue_admitted(self.fair.admit(rq_lane(self.queue.name),
                                             job.extra.get("tenant", ""), [job.job_id]),
                             {job.job_id: again})
        return state

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
                         tenant=batch_tenant(batch_id))
        return job, True

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
                if then is not None:
                    job = self.start(then["kind"], then["args"], owner=f"batch:{batch_id}",
                                     room=False)
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
                    self._stop_in_rq(state.job_id)
        self.changed(states)
        for state in states:
            if outcomes[state.job_id].outcome == READY:
                log.info("job %s: the jobs it waited for have ended; queued", state.job_id)
                self._admit(state)

    def _admit(self, state: JobState) -> None:
        """Queue a job that waited, in its tenant's turn (its RQ job was saved)."""
        tenant = state.extra.get("tenant", "")
        try:
            if state.extra.get("external") == "1":
                self._admit_external(state.kind, tenant, [state.job_id])
            else:
                self._queue_admitted(self.fair.admit(rq_lane(self.queue.name), tenant,
                                                     [state.job_id]))
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
