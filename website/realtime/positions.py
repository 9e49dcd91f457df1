"""Keep the pages of queued jobs told their ``position`` and ``eta``, about once a second.

Each web process runs one ticker (a Socket.IO background task, started by its first
Socket.IO connection, like the relay: ``website/realtime/listener.py``). Every
:data:`TICK_SECONDS` it

1. lists the job rooms that have members *on this process* (the Socket.IO
   manager's rooms: memory, no Redis);
2. reads their state, kind, tenant and priority (one pipeline, ``HMGET``);
3. computes the places of the queued ones (``shared/position.py``: one more
   pipeline, no key scan);
4. sends ``updateProgress`` (the job's payload with ``position``, ``eta``,
   ``paused`` and ``priority``) to the room's connections on this process when the
   place changed, and to a connection that joined since the last send (only to it).

So a job's place is pushed at most once per tick, each process pays only for the
jobs its own connections watch, and a pause or resume reaches the pages of the
kind's waiting jobs within a tick (``paused`` is part of the place), however many
jobs wait. ``make bench`` (section 13) measures the cost with 10,000 queued.
Why hand-written: a place changes when *other* jobs move, so no change of the
job itself could carry it; a per-process tick bounded by its own watchers is the
cheapest way we found (a push per dequeue would cost O(queued) per job run).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask

from shared import keys
from shared.jobstate import JobState
from shared.position import Place, Positions
from shared.priority import of
from shared.protocol import QUEUED, UPDATE_PROGRESS, room_for
from website.extensions import core, socketio
from website.realtime.listener import ProcessListener

log = logging.getLogger(__name__)

EXTENSION = "jobcast.positions"
TICK_SECONDS = 1.0
ROOM_PREFIX = room_for("")
NAMESPACE = "/"
FIELDS = ("state", "kind", "tenant", "priority")


class PositionTicker(ProcessListener):
    """One ticker per web process (see the module)."""

    channel = "the places of watched queued jobs"

    def __init__(self, app: Flask) -> None:
        super().__init__(app)
        # job id -> (the place last sent, the connections it was sent to)
        self.sent: dict[str, tuple[Place, frozenset[str]]] = {}

    def listen(self) -> None:
        """Tick every :data:`TICK_SECONDS` until the process ends."""
        while True:
            socketio.sleep(TICK_SECONDS)
            try:
                self.tick()
            except redis.RedisError as exc:
                log.warning("positions: Redis unavailable: %s", exc)

    @staticmethod
    def watched() -> dict[str, frozenset[str]]:
        """The jobs whose rooms have connections on this process, with those connections."""
        rooms: dict[Any, Any] = socketio.server.manager.rooms.get(NAMESPACE, {})
        return {room[len(ROOM_PREFIX):]: frozenset(members)
                for room, members in list(rooms.items())
                if isinstance(room, str) and room.startswith(ROOM_PREFIX) and members}

    def tick(self) -> int:
        """Send the places that changed; how many were sent."""
        watched = self.watched()
        self.sent = {job_id: sent for job_id, sent in self.sent.items() if job_id in watched}
        if not watched:
            return 0
        with self.app.app_context():
            return self._send(watched)

    def _send(self, watched: dict[str, frozenset[str]]) -> int:
        ids = list(watched)
        pipe = core.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(keys.job_key(job_id), FIELDS)
        queued = []
        for job_id, values in zip(ids, pipe.execute(), strict=True):
            fields = dict(zip(FIELDS, values, strict=True))
            if fields["state"] != QUEUED:
                self.sent.pop(job_id, None)
                continue
            queued.append(JobState(job_id, state=QUEUED, kind=str(fields["kind"] or ""),
                                   extra={k: str(fields[k]) for k in ("tenant", "priority")
                                          if fields[k] is not None}))
        places = Positions(core.client, self.app.config["QUEUE_NAME"],
                           {name: kind.external for name, kind in core.kinds.items()},
                           claim_window=self.app.config["WORKER_GONE_AFTER"]).of(queued)
        changed = [s for s in queued if s.job_id in places and self._changed(
            s.job_id, places[s.job_id], watched[s.job_id])]
        sent = 0
        for state in core.store.get_many([s.job_id for s in changed]):
            if state is None or state.state != QUEUED:
                continue
            place, members = places[state.job_id], watched[state.job_id]
            payload = {**state.to_payload(), **place.to_json(),
                       "priority": of(state.extra.get("priority"))}
            last = self.sent.get(state.job_id)
            # The same place: only the connections that joined since are told it.
            targets = ([room_for(state.job_id)] if last is None or last[0] != place
                       else sorted(members - last[1]))
            for target in targets:
                core.pusher.send_here(target, UPDATE_PROGRESS, payload)  # type: ignore[attr-defined]
            self.sent[state.job_id] = (place, members)
            sent += 1
        if sent:
            socketio.sleep(0)  # let the connections' writers send now
        return sent

    def _changed(self, job_id: str, place: Place, members: frozenset[str]) -> bool:
        last = self.sent.get(job_id)
        return last is None or last[0] != place or not members <= last[1]


def init_app(app: Flask) -> PositionTicker:
    """Attach the ticker to ``app``; it starts with the first Socket.IO connection."""
    ticker = PositionTicker(app)
    app.extensions[EXTENSION] = ticker
    return ticker
