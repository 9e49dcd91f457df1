"""Per-connection limits on Socket.IO events: a token bucket, a room cap and a
budget of log replay.

``subscribe`` and ``watchDashboard`` each cost Redis calls (a dashboard
snapshot about 30), so every connection gets a token bucket
(``SOCKETIO_EVENT_RATE`` per second, ``SOCKETIO_EVENT_BURST`` at most), kept
in the connection's environ (which Socket.IO keeps per connection and drops
with it). A
connection may be in at most ``SOCKETIO_MAX_ROOMS`` rooms besides its own.
:func:`joined` joins a room for the duration of a block and leaves it again
when the block fails in any way, so that no error (Redis down) leaves a room
behind; once a join held, it marks the connection a watcher for the
connection cap (``website/realtime/connections.py``).

A job's log replay (``lastLogId``) is sent only when the connection joins the
job's room, never again for a room it is in, and it is cut to a second bucket
per connection, of bytes: ``SOCKETIO_REPLAY_BYTES`` a minute
(:func:`within_replay_budget`). A cut replay says ``more``, and the client reads
the rest from ``GET /api/jobs/<id>/log``, which pages through it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import current_app, request
from flask_socketio import join_room, leave_room

from shared.errors import TooMany
from shared.joblog import LogBatch
from website.extensions import socketio
from website.realtime.connections import WATCHING

NAMESPACE = "/"
_BUCKET = "jobcast.bucket"
_REPLAY = "jobcast.replay_bucket"


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; one per event."""

    rate: float
    burst: int
    tokens: float
    stamp: float

    def refill(self, now: float) -> float:
        """Add the tokens earned since the last call; how many there are."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False when the bucket is empty."""
        if self.refill(now) < 1:
            return False
        self.tokens -= 1
        return True


class Refused(TooMany):
    """An event the connection may not send now; the message goes into the ack."""


def _sid() -> str:
    return str(request.sid)  # type: ignore[attr-defined]


def throttle() -> None:
    """Spend one token of this connection's bucket; raise :class:`Refused` when empty."""
    cfg = current_app.config
    rate = float(cfg["SOCKETIO_EVENT_RATE"])
    if rate <= 0:
        return
    now = time.monotonic()
    bucket = _bucket(_BUCKET, rate, int(cfg["SOCKETIO_EVENT_BURST"]), now)
    if not bucket.take(now):
        raise Refused(f"too many requests: at most {rate:g} per second "
                      f"(bursts of {bucket.burst}); slow down")


def _bucket(name: str, rate: float, burst: int, now: float) -> TokenBucket:
    """The connection's bucket ``name``, full when new."""
    state = request.environ  # the connection's WSGI environ: lives as long as it does
    bucket = state.get(name)
    if not isinstance(bucket, TokenBucket):
        bucket = state[name] = TokenBucket(rate, burst, float(burst), now)
    return bucket


def within_replay_budget(batch: LogBatch) -> LogBatch:
    """``batch`` (a log replay) cut to the bytes this connection may still be sent
    (``SOCKETIO_REPLAY_BYTES`` a minute), which it spends; a cut batch says ``more``."""
    budget = int(current_app.config["SOCKETIO_REPLAY_BYTES"])
    if budget <= 0:
        return batch
    now = time.monotonic()
    bucket = _bucket(_REPLAY, budget / 60, budget, now)
    cut = batch.cut(int(bucket.refill(now)))
    bucket.tokens -= cut.wire_bytes()
    return cut


def rooms_of(sid: str) -> set[str]:
    """The rooms ``sid`` is in, besides its own."""
    rooms = socketio.server.manager.get_rooms(sid, NAMESPACE) or []
    return {room for room in rooms if room != sid}


@contextmanager
def joined(room: str) -> Iterator[bool]:
    """Join ``room`` (within the room cap); leave it again if the block fails.

    The block gets True when it joined the room now, False when the connection
    was already in it (it then stays joined either way).
    """
    sid = _sid()
    current = rooms_of(sid)
    if room in current:
        yield False
        return
    cap = int(current_app.config["SOCKETIO_MAX_ROOMS"])
    if len(current) >= cap:
        raise Refused(f"too many subscriptions: at most {cap} per connection")
    join_room(room)
    done = False
    try:
        yield True
        done = True
        request.environ[WATCHING] = True  # a watcher now, for the connection cap
    finally:
        if not done:
            leave_room(room)
