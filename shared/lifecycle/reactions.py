"""Reacting: :meth:`Reacting.changed` runs every reaction on what the store stored.

Every source of a change (a start, a report, a claim, a sweep, a cancel, a
retry, the watch, a retry's release) calls it, so a reaction is written once
and holds for all of them. The built-in ones, in order
(:meth:`Reacting._built_in_reactions`): the push to watching pages
(``shared/push.py``); letting the jobs that wait for an ended job go on
(``shared/after.py``); giving up an ended job's place in its lane's queue (fair
share) and its concurrency slot; a batch's ``onComplete``; the completion
webhook's hand-over; deleting the upload of a job that succeeded or was
cancelled; scheduling a failed attempt's retry (``shared/retries.py``); giving
up an ended job's unique key; a succeeded job's duration (its kind's ``eta``).
A feature adds its own with ``add_reaction()``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import redis

from shared import batches, webhooks
from shared.after import CANCELLED_NOW, READY, Settled
from shared.errors import NotFound
from shared.events import Change
from shared.lifecycle.base import LifecycleBase, Reaction
from shared.position import record_durations
from shared.protocol import QUEUED, RUNNING
from shared.store import JobState
from shared.uploads import drop_when_ended

log = logging.getLogger(__name__)


class Reacting(LifecycleBase):
    """The lifecycle's reactions to changes (see the module)."""

    def _built_in_reactions(self) -> list[Reaction]:
        """The reactions every lifecycle runs, in order (before those added later).
        (A job's end lets the jobs waiting for it go first: their start is the latency.)"""
        return [self.pusher.push, self._end_waits, self._free_places, self._free_slots,
                self._complete_batches, self._hand_over_webhooks,
                drop_when_ended(self.uploads, self.kinds), self.retries.schedule,
                self._release_unique, self._record_durations]

    def add_reaction(self, reaction: Reaction) -> None:
        """Run ``reaction`` on every change from now on (after the built-in ones)."""
        self.reactions.append(reaction)

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
        webhooks' queue (``queueing.py``)."""
        for change in changes:
            if not change.state.finished:
                continue
            job_id = change.state.job_id
            try:
                delivery = webhooks.claim_delivery(self.client, job_id)
                if delivery is not None:
                    self._enqueue_webhook(job_id, delivery)
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
