"""Waking the claims that wait for a job, one listener per web process.

A claim with ``wait`` holds no Redis connection of its own: it waits on an
event (``socketio.server.eio.create_event()``: green under eventlet/gevent).
Each web process runs one listener, a Socket.IO background task started by the
first claim it serves, on :data:`shared.keys.EXTERNAL_CHANNEL`. Every "a job of
kind K was queued" message (from any process; the message is K) wakes one
claim: the one of this process that has waited longest for K and is not woken
already. A woken claim retries the atomic pop; when it got a job it wakes the
next one for each of its kinds (more jobs may be queued than messages were
sent, and another process may have taken the job this one was woken for), so
N queued jobs cost about N + 1 pops per process, whatever the number of
waiting claims. A message that names no kind, and each (re)subscription
(messages may have been missed meanwhile), wakes them all. Once a second the
listener also sweeps the lapsed leases; a requeue publishes its kind. Waiting
claims do not poll while the listener runs. In-process test apps (``TESTING``
or ``ASYNC_MODE=threading``) run no listener: their claims retry at a short
interval instead.

Who may do this: publishing needs the site's Redis, and a message only wakes
claims, which then take what the queues hold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from flask import Flask
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared import keys, redisconn
from website.extensions import core, socketio
from website.realtime.listener import ProcessListener

log = logging.getLogger(__name__)
NOTIFIER = "jobcast.claims.notifier"  # app.extensions: this process's Notifier

SWEEP_EVERY = 1.0  # seconds between the listener's lease sweeps
POLL_WITHOUT_LISTENER = 0.2  # how often a waiting claim retries when no listener runs


class Notifier(ProcessListener):
    """This process's waiting claims and the listener that wakes them."""

    channel = keys.EXTERNAL_CHANNEL

    def __init__(self, app: Flask) -> None:
        super().__init__(app)
        self.waiters: dict[Any, tuple[str, ...]] = {}  # event -> kinds, oldest first
        self.sweeps = 0
        cfg = app.config
        reserve = cfg["WORKER_CONNECTIONS"] - cfg["SOCKETIO_MAX_CONNECTIONS"]
        self.limit: int = cfg["CLAIM_MAX_WAITING"] or reserve // 2

    @property
    def full(self) -> bool:
        """True when ``limit`` claims wait already: another one must not wait."""
        return len(self.waiters) >= self.limit

    @property
    def poll_interval(self) -> float | None:
        """How long a waiting claim sleeps at most before it tries again (None: until
        woken or its wait ends, when this process's listener runs)."""
        return None if self.running else POLL_WITHOUT_LISTENER

    def new_event(self, kinds: Sequence[str]) -> Any:
        """A registered event for a claim of ``kinds`` that :meth:`wake` sets; pass it
        to :meth:`forget` when done."""
        event = socketio.server.eio.create_event()
        self.waiters[event] = tuple(kinds)
        return event

    def forget(self, event: Any) -> None:
        """Stop waking ``event``."""
        self.waiters.pop(event, None)

    def wake(self, kind: str | None = None) -> None:
        """Wake the claim that has waited longest for ``kind`` and is not woken yet
        (every waiting claim when ``kind`` is None)."""
        for event, kinds in list(self.waiters.items()):
            if kind is None:
                event.set()
            elif kind in kinds and not event.is_set():
                event.set()
                return

    def pass_on(self, kinds: Sequence[str]) -> None:
        """A woken claim took a job: wake the next claim for each of ``kinds``."""
        for kind in kinds:
            self.wake(kind)

    def listen(self) -> None:
        """Wake a claim per message; sweep the leases every second."""
        client = redisconn.connect(self.app.config["REDIS_URL"], decode_responses=True)
        next_sweep = 0.0
        while True:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(keys.EXTERNAL_CHANNEL)
                self.wake()  # anything published before we listened
                while True:
                    message = pubsub.get_message(timeout=SWEEP_EVERY)
                    if message is not None:
                        data = message.get("data")
                        self.wake(data if isinstance(data, str) and data else None)
                    if time.monotonic() >= next_sweep:
                        next_sweep = time.monotonic() + SWEEP_EVERY
                        self.sweep()
            except redis.RedisError as exc:
                log.warning("claims: Redis unavailable (%s); subscribing again", exc)
                socketio.sleep(1.0)
            finally:
                pubsub.close()

    def sweep(self) -> None:
        """Requeue lapsed leases (pushing the new states; a requeue publishes its kind)."""
        with self.app.app_context():
            core.lifecycle.sweep()
        self.sweeps += 1


class WaitingClaims(Collector):
    """``jobcast_waiting_claims`` on ``/metrics``: claims this web process holds open
    waiting for a job (from the moment a claim is ready to be woken until it answers)."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Count the registered waiters."""
        yield GaugeMetricFamily("jobcast_waiting_claims",
                                "Claims waiting for a job in this web process",
                                value=len(self.notifier.waiters))
