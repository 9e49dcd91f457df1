"""Push to open pages the states the worker stored without the site.

When the site cannot be reached, the worker's fallback
(``worker.reporting.DirectStore``) writes a job's state straight into Redis
and, when there is no Socket.IO message queue to emit through, publishes the
job's id on :data:`shared.keys.STATE_CHANNEL`. Each web process runs one
listener on that channel: it reads the stored state and emits the same events
as the progress callback (:func:`shared.events.state_events`) to its own
clients, so a page open on any process sees the end without a reload.

Who may do this: only a client of the site's Redis can publish, and the
message is just a job id: the listener pushes what is stored for that job,
never anything the publisher sends, so a stray message at most repeats the
true state.

The listener is a Socket.IO background task started by the first request a
process serves (so in gunicorn's worker process, after any fork), never at
import. It is off with a message queue (the worker then emits through it),
and for in-process test apps (``TESTING`` or ``ASYNC_MODE=threading``), which
serve no real clients.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
from flask import Flask

from shared import keys
from shared.batches import UnknownBatch, ended_all, push_totals
from shared.events import state_events
from shared.joblog import is_log_id, read_log
from website.extensions import redis_ext, socketio
from website.realtime.listener import ProcessListener

log = logging.getLogger(__name__)

EXTENSION = "jobcast.relay"
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class Relay(ProcessListener):
    """One listener per web process on the channel of fallback-stored states."""

    channel = keys.STATE_CHANNEL

    @property
    def wanted(self) -> bool:
        """True when this app should relay: served by eventlet/gevent, no message queue."""
        return super().wanted and not self.app.config["SOCKETIO_MESSAGE_QUEUE"]

    def listen(self) -> None:
        """Push the state of every job id published on the channel, resubscribing on errors."""
        client = redis.Redis.from_url(self.app.config["REDIS_URL"], decode_responses=True)
        while True:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(keys.STATE_CHANNEL)
                for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.push(str(message["data"]))
            except redis.RedisError as exc:
                log.warning("relay: Redis unavailable (%s); subscribing again", exc)
                socketio.sleep(1.0)
            finally:
                pubsub.close()

    def push(self, message: str) -> int:
        """Emit the stored state of the job ``message`` names as the callback would,
        with the log lines stored after the line id it may name; the number of events."""
        job_id, _, log_after = message.partition(" ")
        with self.app.app_context():
            try:
                state = redis_ext.store.get(job_id)
                if state is not None and is_log_id(log_after):
                    batch = read_log(redis_ext.client, job_id, log_after,
                                     self.app.config["JOB_LOG_MAX"])
                    if batch.lines:
                        state = dataclasses.replace(state, log=batch)
            except redis.RedisError as exc:
                log.warning("relay: could not read job %s: %s", job_id[:64], exc)
                return 0
            if state is None:
                return 0
            events = state_events(state, redis_ext.snippets, time.time())
            for event, payload, room in events:
                socketio.emit(event, payload, to=room)
            batch_id = state.extra.get("batch_id")
            if batch_id:  # its batch's totals, as the callback would push them
                self._push_batch(batch_id, state.finished)
        log.info("relay: pushed job %s (%s) stored by the worker's fallback",
                 job_id, state.state)
        return len(events)


    def _push_batch(self, batch_id: str, finished: bool) -> None:
        """Push a changed child's batch totals (throttled; always once every child ended)."""
        client = redis_ext.client
        try:
            push_totals(client, batch_id, _emit, final=finished and ended_all(client, batch_id))
        except (UnknownBatch, redis.RedisError) as exc:
            log.warning("relay: batch %s totals not pushed: %s", batch_id[:64], exc)


def _emit(event: str, payload: dict[str, Any], room: str) -> None:
    socketio.emit(event, payload, to=room)


class _StartOnFirstRequest:
    """WSGI wrapper: the first request of each process starts its relay."""

    def __init__(self, wsgi_app: WsgiApp, relay: Relay) -> None:
        self.wsgi_app = wsgi_app
        self.relay = relay

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self.relay.running:
            self.relay.ensure_started()
        return self.wsgi_app(environ, start_response)


def init_app(app: Flask) -> Relay:
    """Attach the relay to ``app``; its listener starts with the first request served."""
    relay = Relay(app)
    app.extensions[EXTENSION] = relay
    app.wsgi_app = _StartOnFirstRequest(app.wsgi_app, relay)  # type: ignore[method-assign]
    return relay
