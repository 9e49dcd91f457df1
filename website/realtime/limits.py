"""Per-connection limits on Socket.IO events: a token bucket and a room cap.

``subscribe`` and ``watchDashboard`` each cost Redis calls (a dashboard
snapshot about 30), so every connection gets a token bucket
(``SOCKETIO_EVENT_RATE`` per second, ``SOCKETIO_EVENT_BURST`` at most), kept
in the connection's environ (which Socket.IO keeps per connection and drops
with it). A
connection may be in at most ``SOCKETIO_MAX_ROOMS`` rooms besides its own.
:func:`joined` joins a room for the duration of a block and leaves it again
when the block fails in any way, so that no error (Redis down) leaves a room
behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import current_app, request
from flask_socketio import join_room, leave_room

from shared.errors import TooMany
from website.extensions import socketio

NAMESPACE = "/"
_BUCKET = "jobcast.bucket"


@dataclass
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; one per event."""

    rate: float
    burst: int
    tokens: float
    stamp: float

    def take(self, now: float) -> bool:
        """Spend one token if there is one; False when the bucket is empty."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
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
    state = request.environ  # the connection's WSGI environ: lives as long as it does
    now = time.monotonic()
    bucket = state.get(_BUCKET)
    if not isinstance(bucket, TokenBucket):
        burst = int(cfg["SOCKETIO_EVENT_BURST"])
        bucket = state[_BUCKET] = TokenBucket(rate, burst, float(burst), now)
    if not bucket.take(now):
        raise Refused(f"too many requests: at most {rate:g} per second "
                      f"(bursts of {bucket.burst}); slow down")


def rooms_of(sid: str) -> set[str]:
    """The rooms ``sid`` is in, besides its own."""
    rooms = socketio.server.manager.get_rooms(sid, NAMESPACE) or []
    return {room for room in rooms if room != sid}


@contextmanager
def joined(room: str) -> Iterator[None]:
    """Join ``room`` (within the room cap); leave it again if the block fails.

    A room the connection was already in stays joined either way.
    """
    sid = _sid()
    current = rooms_of(sid)
    if room in current:
        yield
        return
    cap = int(current_app.config["SOCKETIO_MAX_ROOMS"])
    if len(current) >= cap:
        raise Refused(f"too many subscriptions: at most {cap} per connection")
    join_room(room)
    done = False
    try:
        yield
        done = True
    finally:
        if not done:
            leave_room(room)
