"""Queueing: how a stored job reaches a worker, in its tenant's turn.

A job is handed over as its kind says (:meth:`Queueing._hand_over`): claimed over
HTTP for an external kind (its kind's queue, ``shared/claimqueue.py``), else run
by RQ (``RUN_KIND_JOB`` by dotted name, with the kind's ``timeout`` and a per-job
callback token); ``run_at`` waits in RQ's scheduler either way. Every job goes
in its tenant's turn (fair share, ``shared/fairshare.py``), after its kind's
concurrency limit let it through (``shared/concurrency.py``), unless its kind is
paused (``shared/pause.py``). This module is the one that puts jobs on RQ's
queues (the webhooks' deliveries too); the others ask it to.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from shared import keys, webhooks
from shared.concurrency import Promoted
from shared.fairshare import EXTERNAL_LANE, Admitted, rq_lane
from shared.kinds import JobKind
from shared.kinds.policy import DEFAULT_PRIORITY
from shared.lifecycle.base import ENQUEUE_CHUNK, LifecycleBase
from shared.priority import external_of_lane, lane_of, rq_queue_of_lane
from shared.protocol import FAILED, QUEUED, RELEASE_JOB, RUN_KIND_JOB, ProgressUpdate
from shared.rqconf import SERIALIZER, rq_queue
from shared.signing import sign_job_token
from shared.store import JobState, UnknownJob
from shared.uploads import uploads_of

log = logging.getLogger(__name__)


class Queueing(LifecycleBase):
    """The lifecycle's hand-overs (see the module)."""

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

    def _enqueue_webhook(self, job_id: str, delivery: str) -> None:
        """Enqueue the delivery of ``job_id``'s webhook on the webhooks' queue (never
        behind, nor in, a user job); its RQ job timeout is the delivery's deadline."""
        intervals = list(self.cfg.WEBHOOK_BACKOFF)
        self.webhook_queue.enqueue(
            webhooks.DELIVER_JOB, job_id, delivery,
            job_timeout=self.cfg.WEBHOOK_DEADLINE,
            retry=Retry(max=len(intervals), interval=intervals),
            result_ttl=self.cfg.JOB_TTL, failure_ttl=self.cfg.JOB_TTL)

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

    def heal_slots(self) -> int:
        """Free slots whose jobs ended without giving them back, and let held jobs take
        them (the tick runs it now and then); how many jobs were let through."""
        promoted = self.limits.heal()
        self._let_through(promoted)
        return len(promoted)
