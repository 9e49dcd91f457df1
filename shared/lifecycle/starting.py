"""Starting: the one place a job starts (:meth:`Starting.start`, :meth:`Starting.start_batch`).

Before anything is stored, the store's global caps are checked, a ``unique``
kind's key is taken (``shared/unique.py``: a start that finds it held answers
the holder, :meth:`Starting.deduplicated`), ``after`` is checked
(``shared/after.py``), then the tenant's quotas are checked and taken
(``shared/quotas.py``); an upload is stored once, apart from RQ's job, which
names it only (``shared/uploads.py``). The job is stored with the fields its
kind asks for, then handed over (``queueing.py``) and reacted to
(``reactions.py``, ``changed(created=True)``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis

from shared import batches, tracing, watch
from shared.after import check_after
from shared.errors import Conflict, Invalid, JobcastError
from shared.kinds import JobKind
from shared.lifecycle.base import LifecycleBase
from shared.protocol import QUEUED, SCHEDULED, WAITING, new_id
from shared.quotas import Usage, bucket_of, quota_tenants, tenant_fields
from shared.store import JobState
from shared.unique import DEDUPLICATED, STORE_GRACE, unique_key
from shared.uploads import upload_bytes, uploads_of

log = logging.getLogger(__name__)


class Starting(LifecycleBase):
    """The lifecycle's starts (see the module)."""

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
