"""Pushing changes to the pages that watch them: the one module that emits.

Every process that changes a job hands the change to its :class:`Pusher`
(``Lifecycle``'s push reaction); the events come from ``shared/events.py``
and, for a batch's child, its batch's totals (``batchProgress``, at most about
ten a second per batch: ``shared/batches.py``). How they travel depends on the
process:

* :class:`ServerPush`, in a web process: through its Socket.IO server. Without
  a message queue only this process's clients can be in a room, so an event for
  a room nobody here is in is not even encoded; with one, every event is
  published, since other processes' clients may be in the room. It also sends a
  joining connection its own state (:meth:`ServerPush.send`).
* :class:`QueuePush`, in the worker and the tick with ``SOCKETIO_MESSAGE_QUEUE``:
  a write-only emitter on the message queue.
* :class:`RelayPush`, in the worker and the tick without one: the job's id (and
  the id of the log line before the change's lines) is published on
  ``keys.STATE_CHANNEL``; every web process's relay (``website/realtime/relay.py``)
  reads what is stored and pushes it through its own :class:`ServerPush`. Only
  the id travels, so a stray message at most repeats the true state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any, Protocol

import redis
import socketio

from shared import batches, keys, redisconn
from shared.events import Change, Event, KindEvents, change_events

log = logging.getLogger(__name__)
SOCKETIO_CHANNEL = "jobcast"  # the message queue's channel, shared by every process


class Pusher(Protocol):
    """Takes the changes one process stored and gets them to the pages."""

    def push(self, changes: list[Change]) -> int:
        """Push ``changes`` (in order) to whoever watches them; how many events (or
        messages) went out."""


class Emitter:
    """A pusher that builds the events itself and emits them (:meth:`emit`)."""

    def __init__(self, client: redis.Redis, kind_events: Callable[[str], KindEvents | None]) -> None:
        self.client = client
        self.kind_events = kind_events

    def events(self, changes: Iterable[Change]) -> list[Event]:
        """The events of ``changes``, with each changed child's batch totals."""
        events: list[Event] = []
        for change in changes:
            hook = None if change.created else self.kind_events(change.state.kind)
            extra = hook(change.state, self.client) if hook is not None else None
            events.extend(change_events(change, extra))
            batch_id = change.state.extra.get("batch_id")
            if batch_id and not change.created:
                totals = batches.totals_event(self.client, batch_id, change.state)
                if totals is not None:
                    events.append(totals)
        return events

    def push(self, changes: list[Change]) -> int:
        """Emit the events of ``changes``; how many."""
        events = self.events(changes) if changes else []
        if events:
            self.emit(events)
        return len(events)

    def emit(self, events: list[Event]) -> None:
        raise NotImplementedError


class ServerPush(Emitter):
    """Emits through a web process's Socket.IO server (``socketio``: Flask-SocketIO's
    extension object, bound by the time anything is pushed)."""

    def __init__(self, socketio: Any, client: redis.Redis,
                 kind_events: Callable[[str], KindEvents | None], message_queue: bool) -> None:
        super().__init__(client, kind_events)
        self.socketio = socketio
        self.message_queue = message_queue

    def emit(self, events: list[Event]) -> None:
        manager = self.socketio.server.manager
        sent = False
        for event, payload, room in events:
            if not self.message_queue and next(manager.get_participants("/", room), None) is None:
                continue  # nobody here watches it, and nobody elsewhere can
            self.socketio.emit(event, payload, to=room)
            sent = True
        if sent:  # let the connections' writer tasks send now, before the caller answers
            self.socketio.sleep(0)

    def send_here(self, room: str, event: str, payload: dict[str, Any]) -> None:
        """Send ``event`` to this process's own connections in ``room`` only (never
        through the message queue: each web process serves its own watchers, as the
        position ticker does, ``website/realtime/positions.py``)."""
        self.socketio.emit(event, payload, to=room, ignore_queue=True)

    def send(self, sid: str, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Send ``(event, payload)`` to one connection (its state when it joins a room)."""
        for event, payload in events:
            self.socketio.emit(event, payload, to=sid)


class QueuePush(Emitter):
    """Emits through the Socket.IO message queue, write-only (worker, tick)."""

    def __init__(self, message_queue: str, client: redis.Redis,
                 kind_events: Callable[[str], KindEvents | None]) -> None:
        super().__init__(client, kind_events)
        self.message_queue = message_queue

    def emit(self, events: list[Event]) -> None:
        emitter = queue_emitter(self.message_queue)
        for event, payload, room in events:
            emitter.emit(event, payload, namespace="/", room=room)


class RelayPush:
    """Publishes the changed jobs' ids for the web processes' relays (no message queue)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def push(self, changes: list[Change]) -> int:
        """``"<job id>"``, or ``"<job id> <log id before the change's lines>"``, per change."""
        if not changes:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for change in changes:
            log_batch = change.state.log
            pipe.publish(keys.STATE_CHANNEL, change.state.job_id if log_batch is None
                         else f"{change.state.job_id} {log_batch.after}")
        pipe.execute()
        return len(changes)


@lru_cache(maxsize=2)
def queue_emitter(message_queue: str) -> socketio.RedisManager:
    """python-socketio's write-only manager on ``message_queue``: what the web processes'
    managers listen to (no server, no event loop needed)."""
    url, options = redisconn.message_queue(message_queue)
    return socketio.RedisManager(url, channel=SOCKETIO_CHANNEL, write_only=True,
                                 redis_options=options)
