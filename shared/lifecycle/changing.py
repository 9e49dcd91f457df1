"""Changing: every change to a stored job, applied by the store, then reacted to.

:meth:`Changing.report` and :meth:`Changing.report_many` (progress reports,
through the site or the worker's fallback), :meth:`Changing.claim` (an external
worker takes a job), :meth:`Changing.sweep` (lapsed leases),
:meth:`Changing.cancel` (a running job is asked to stop first,
``shared/watch.py``), :meth:`Changing.retry`, a batch's cancel, and pausing and
resuming a kind (``shared/pause.py``): the store applies each atomically (its
Lua scripts), then ``changed()`` (``reactions.py``) runs every reaction on what
was stored. A kind's own retries (``retries``) are decided by the store and
released by ``shared/retries.py``.
"""

from __future__ import annotations

import logging
import time

from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from shared import batches, keys, watch
from shared.apikeys import batch_tenant
from shared.claimqueue import Claim, LeasesLapsed
from shared.errors import Conflict
from shared.fairshare import rq_lane
from shared.kinds.bulk import BULK_KIND
from shared.kinds.policy import DEFAULT_PRIORITY
from shared.lifecycle.base import ENQUEUE_CHUNK, RQ_ACTIVE, LifecycleBase
from shared.protocol import (
    CANCELLABLE_STATES,
    CANCELLED,
    FAILED,
    QUEUED,
    RETRYABLE_STATES,
    RUNNING,
    ProgressUpdate,
    is_uuid,
    new_id,
)
from shared.rqconf import SERIALIZER
from shared.store import Applied, InvalidTransition, JobState, UnknownJob, UpdateAnswer

log = logging.getLogger(__name__)


class Changing(LifecycleBase):
    """The lifecycle's changes (see the module)."""

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
