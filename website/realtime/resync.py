"""Bring this process's pages up to date after its message-queue listener was down.

While a web process's subscriber connection to the message queue is down (a
Redis failover or restart: ``shared/roomqueue.py`` subscribes again after 1 s,
2 s, 4 s...), events published for its rooms never reach it: a job that ended
in the gap would look running on its pages until the next event, which never
comes. So once Redis has confirmed the new subscriptions, the manager calls
:meth:`Resync.run` (its ``on_resubscribed`` hook, as a Socket.IO background
task) with the rooms this process holds, and this module pushes each one's
stored state, read after the subscriptions were confirmed (the same join-then-
read order as a joining page: an event published after it arrives, one
published before it is in what was read):

* a job room gets ``jobLog`` ``{after: <the job's newest line>, lines: []}`` and
  then ``updateProgress`` with the stored state (and what the job's kind adds to
  its room). The empty batch tells a page that lines up to that id exist: a page
  that missed some waits for them and reads them from the log API
  (``website/static/js/job.js``, the Python client's ``watch``), one that has
  them ignores it; a final state makes both read the log to its end anyway;
* a batch room gets ``batchProgress`` with the stored totals;
* the dashboard room gets nothing: its snapshot comes in the ack of its watch,
  and there is no event that makes it ask again, so a dashboard row that changed
  in the gap is brought up to date by the job's next change or a reload.

Only this process's own connections get them (``ServerPush.send_here``:
python-socketio's documented local emit, ``emit(..., ignore_queue=True)``): every
other process's listener was down too and runs its own resync, so publishing
would deliver each state N times. The states are idempotent (a repeat of what
is stored), so a page that already had them sees nothing change.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from flask import Flask

from shared.batches import UnknownBatch, batch_totals
from shared.events import Change
from shared.joblog import LogBatch
from shared.protocol import BATCH_PROGRESS, batch_room, room_for
from website.extensions import core, socketio

log = logging.getLogger(__name__)

EXTENSION = "jobcast.resync"
NAMESPACE = "/"
JOB_PREFIX = room_for("")
BATCH_PREFIX = batch_room("")
CHUNK = 500  # job states read per round trip


class Resync:
    """Pushes the stored state of this process's rooms to their local connections."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def run(self, rooms: dict[str, list[str]]) -> int:
        """Push the stored state of every job and batch room in ``rooms`` (the manager's
        ``{namespace: [room]}``) to this process's connections; how many events."""
        names = rooms.get(NAMESPACE, [])
        jobs = [room[len(JOB_PREFIX):] for room in names if room.startswith(JOB_PREFIX)]
        batches = [room[len(BATCH_PREFIX):] for room in names if room.startswith(BATCH_PREFIX)]
        sent = 0
        with self.app.app_context():
            try:
                for start in range(0, len(jobs), CHUNK):
                    sent += self.push_jobs(jobs[start:start + CHUNK])
                    socketio.sleep(0)  # let the connections' writers send between chunks
                for batch_id in batches:
                    sent += self.push_batch(batch_id)
            except redis.RedisError as exc:  # down again: the next resubscription resyncs
                log.warning("resync: Redis unavailable: %s", exc)
        log.info("resync: %d event(s) to %d job and %d batch room(s) of this process",
                 sent, len(jobs), len(batches))
        return sent

    def push_jobs(self, job_ids: list[str]) -> int:
        """Send each job's stored state to its room's local connections."""
        sent = 0
        now = time.time()
        for job_id, state in zip(job_ids, core.store.get_many(job_ids), strict=True):
            if state is None:
                continue
            room = room_for(job_id)
            marker = LogBatch(job_id, state.log_last, ()).event()
            events = [marker, *(event for event in core.pusher.events([Change(state, now)])
                                if event[2] == room)]
            for event, payload, _room in events:
                self.send(room, event, payload)
            sent += len(events)
        return sent

    def push_batch(self, batch_id: str) -> int:
        """Send the batch's stored totals to its room's local connections."""
        try:
            totals = batch_totals(core.client, batch_id)
        except UnknownBatch:
            return 0
        self.send(batch_room(batch_id), BATCH_PROGRESS, totals)
        return 1

    @staticmethod
    def send(room: str, event: str, payload: dict[str, Any]) -> None:
        """To this process's connections in ``room`` only, never through the queue."""
        core.pusher.send_here(room, event, payload)


def init_app(app: Flask) -> Resync | None:
    """Give the message queue's manager (``shared/roomqueue.py``) its resync hook; None
    without a message queue (no listener, nothing to miss) or with python-socketio's
    own manager (``SOCKETIO_SUBSCRIPTIONS=all``, which has no hook)."""
    manager = socketio.server.manager
    if not hasattr(manager, "on_resubscribed"):
        return None
    resync = Resync(app)
    manager.on_resubscribed = resync.run
    app.extensions[EXTENSION] = resync
    return resync
