"""Push to open pages the states a worker stored without the site and without a message queue.

When the site cannot be reached, the worker's fallback (``worker/boundary.py``)
stores a job's change itself, and without a Socket.IO message queue to push
through it publishes the job's id on :data:`shared.keys.STATE_CHANNEL`
(``shared.push.RelayPush``). Each web process runs one listener on that
channel: it reads the stored state and pushes it through its own pusher,
the same events as a report it took itself, to its own clients, so a page open
on any process sees the end without a reload.

Who may do this: only a client of the site's Redis can publish, and the
message is just a job id: the listener pushes what is stored for that job,
never anything the publisher sends, so a stray message at most repeats the
true state.

The listener is a Socket.IO background task started by the process's first
Socket.IO connection (``website/realtime/sockets.py``: only a process with
clients has anyone to push to), never at import. It is off with a message
queue (the worker pushes through it), and for in-process test apps (``TESTING``
or ``ASYNC_MODE=threading``), which serve no real clients.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import redis
from flask import Flask

from shared import keys, redisconn
from shared.events import Change
from shared.joblog import is_log_id, read_log
from website.extensions import core, socketio
from website.realtime.listener import ProcessListener

log = logging.getLogger(__name__)

EXTENSION = "jobcast.relay"


class Relay(ProcessListener):
    """One listener per web process on the channel of fallback-stored states."""

    channel = keys.STATE_CHANNEL

    @property
    def wanted(self) -> bool:
        """True when this app should relay: served by eventlet/gevent, no message queue."""
        return super().wanted and not self.app.config["SOCKETIO_MESSAGE_QUEUE"]

    def listen(self) -> None:
        """Push the state of every job id published on the channel, resubscribing on errors."""
        client = redisconn.connect(self.app.config["REDIS_URL"], decode_responses=True)
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
        """Push the stored state of the job ``message`` names as a report would, with the
        log lines stored after the line id it may name; the number of events."""
        job_id, _, log_after = message.partition(" ")
        with self.app.app_context():
            try:
                state = core.store.get(job_id)
                if state is not None and is_log_id(log_after):
                    batch = read_log(core.client, job_id, log_after,
                                     self.app.config["JOB_LOG_MAX"])
                    if batch.lines:
                        state = dataclasses.replace(state, log=batch)
            except redis.RedisError as exc:
                log.warning("relay: could not read job %s: %s", job_id[:64], exc)
                return 0
            if state is None:
                return 0
            pushed = core.pusher.push([Change(state, time.time())])
        log.info("relay: pushed job %s (%s) stored by the worker", job_id, state.state)
        return pushed


def init_app(app: Flask) -> Relay:
    """Attach the relay to ``app``; its listener starts with the first Socket.IO connection."""
    relay = Relay(app)
    app.extensions[EXTENSION] = relay
    return relay
