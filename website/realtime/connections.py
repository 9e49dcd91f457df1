"""Caps on Socket.IO sessions, so that HTTP requests are never starved and a
few clients cannot lock every watcher out.

gunicorn's eventlet and gevent workers serve each connection in a green
thread from a pool of ``WORKER_CONNECTIONS``. A websocket holds its green
thread for as long as it is open; once the pool is full the worker stops
accepting, and even ``POST /api/progress`` waits. :class:`ConnectionCap`
answers a new Socket.IO handshake with ``503`` (and ``Retry-After``) once
``SOCKETIO_MAX_CONNECTIONS`` connections are open, which keeps the rest of
the pool for plain HTTP requests. Requests of sessions already open always
pass.

Handshakes cost nothing to send, so more limits keep them from filling the cap
(issue #13, part 4; issue #26, section 3):

- one client may hold at most ``SOCKETIO_MAX_PER_CLIENT`` sessions (``429``
  beyond). The client is keyed as the rate limiter keys it
  (:func:`website.http.ratelimit.client_network`: an IPv6 address by its /64,
  behind ``TRUSTED_PROXIES`` the forwarded address, which ``ProxyFix`` outside
  this middleware has put in ``REMOTE_ADDR``);
- a share of the cap, ``SOCKETIO_WATCHER_SHARE`` percent, is kept for
  connections that watch a room: sessions that have joined none yet may hold
  only the rest. A handshake that says it comes to watch (``?jobId=``, joined
  at connect, or a page's ``?watch=``: ``shared.protocol.WATCH_QUERY``) may use
  the whole cap (if it then joins nothing, the sweep below closes it as any other);
- a sweep, a Socket.IO background task started with the first handshake in
  each process, drops every session that has not completed its Socket.IO
  connect within ``SOCKETIO_CONNECT_TIMEOUT`` seconds, and disconnects
  (``socketio.Server.disconnect``) every connection that has joined no room
  ``SOCKETIO_IDLE_JOIN_SECONDS`` after its handshake; a session still without
  a Socket.IO connection by then goes too (the client that was told closes it).

A connection counts as a watcher once :func:`website.realtime.limits.joined`
has joined it to a room (it marks the session's environ: rooms are never left
but when that join fails), so the sweep reads a flag per session instead of
scanning every room.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from shared.protocol import JOB_QUERY, WATCH_QUERY, is_uuid
from website.http.ratelimit import client_network

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

RETRY_AFTER_SECONDS = 5


HANDSHAKE_AT = "jobcast.handshake_at"  # environ key: when the session's handshake came
CLIENT = "jobcast.client"  # environ key: who holds the session (the rate limiter's key)
WATCHING = "jobcast.watching"  # environ key: set once the connection joined a room
NAMESPACE = "/"


def client_of(environ: dict[str, Any]) -> str:
    """Who holds a session: its address as the rate limiter keys it (IPv6 by its /64)."""
    key = environ.get(CLIENT)
    return key if isinstance(key, str) else client_network(environ.get("REMOTE_ADDR"))


def comes_to_watch(query: dict[str, list[str]]) -> bool:
    """True for a handshake that names the room it comes for (``jobId``, ``watch``)."""
    return any(is_uuid(value) for value in query.get(JOB_QUERY, ())) or bool(
        query.get(WATCH_QUERY))


class ConnectionCap:
    """WSGI middleware refusing new Socket.IO sessions beyond the caps.

    ``server`` is the ``socketio.Server``: its ``environ`` (one per Engine.IO
    session) tells who holds which session, its manager whether the session
    completed a Socket.IO connect. ``watcher_share`` is the percent of ``limit``
    kept for connections that watch a room; ``idle_join`` the seconds after its
    handshake by which a connection must be in a room (``0``: no limit).
    """

    def __init__(self, app: WSGIApp, limit: int, server: Any, per_client: int,
                 connect_timeout: float, path: str = "/socket.io", watcher_share: int = 0,
                 idle_join: float = 0.0) -> None:
        self.app = app
        self.limit = limit
        self.server = server
        self.per_client = per_client
        self.connect_timeout = connect_timeout
        self.idle_join = idle_join
        # Sessions that watch no room may hold this many; the rest is kept for watchers.
        self.unjoined_limit = max(1, limit - limit * watcher_share // 100)
        self.path = path.rstrip("/") + "/"
        self.in_flight = 0
        self.refused = 0
        self.dropped = 0
        self.idle_closed = 0
        self._lock = threading.Lock()
        self._sweeper_pid = 0
        # Sessions per client and those in no room, as of the last sweep, plus the
        # handshakes since: counting every session on each handshake would cost
        # O(sessions).
        self._by_client: dict[str, int] = {}
        self._recent: dict[str, int] = {}
        self._unjoined = 0

    def sessions(self) -> int:
        """Engine.IO sessions open in this process."""
        return len(self.server.eio.sockets)

    def sessions_of(self, client: str) -> int:
        """Engine.IO sessions opened by ``client`` (a :func:`client_of` key), as of the
        last sweep, plus the handshakes since."""
        return self._by_client.get(client, 0) + self._recent.get(client, 0)

    def unjoined(self) -> int:
        """Sessions in no room (as of the last sweep, plus the handshakes since)."""
        return self._unjoined + sum(self._recent.values())

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Pass the request on, or refuse a new Socket.IO session when full."""
        path = environ.get("PATH_INFO", "")
        if not (path + "/").startswith(self.path):
            return self.app(environ, start_response)
        query = parse_qs(environ.get("QUERY_STRING", ""))
        is_new = "sid" not in query
        client = ""
        if is_new:
            self._start_sweeper()
            environ[HANDSHAKE_AT] = time.monotonic()
            client = environ[CLIENT] = client_network(environ.get("REMOTE_ADDR"))
            if self.sessions_of(client) >= self.per_client:
                log.info("Socket.IO connection refused: %s holds %s sessions",
                         client, self.per_client)
                return self._refuse(start_response, "429 Too Many Requests",
                                    f"too many live connections from your address "
                                    f"(at most {self.per_client}); retry shortly")
        with self._lock:
            full = self.in_flight >= self.limit or self.sessions() >= self.limit
            # A handshake that does not say it comes to watch may not take the share
            # of the cap kept for watchers.
            idle_full = (is_new and not full and self.unjoined() >= self.unjoined_limit
                         and not comes_to_watch(query))
            if is_new and (full or idle_full):
                self.refused += 1
                refused = self.refused
            else:
                self.in_flight += 1
                refused = 0
                if is_new:
                    self._recent[client] = self._recent.get(client, 0) + 1
        if refused:
            if refused == 1 or refused % 1000 == 0:
                log.warning("Socket.IO connection refused: %s open, %s in no room (limits %s, "
                            "%s); %s refused", self.sessions(), self.unjoined(), self.limit,
                            self.unjoined_limit, refused)
            return self._refuse(start_response, "503 Service Unavailable",
                                "too many live connections on this server; retry shortly")
        try:
            return self.app(environ, start_response)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _start_sweeper(self) -> None:
        """Start :meth:`sweep_forever` once in this process (lazily: after any fork)."""
        if self._sweeper_pid == os.getpid():
            return
        with self._lock:
            if self._sweeper_pid == os.getpid():
                return
            self._sweeper_pid = os.getpid()
        self.server.start_background_task(self.sweep_forever)

    def sweep_forever(self) -> None:
        """Every second or so, count sessions by client and drop those that never
        connected or joined no room in time."""
        timeouts = [t for t in (self.connect_timeout, self.idle_join) if t > 0]
        interval = min(1.0, min(timeouts) / 2) if timeouts else 1.0
        while True:
            self.server.sleep(interval)
            try:
                self.sweep()
            except (KeyError, RuntimeError, OSError) as exc:  # a session closing meanwhile
                log.warning("Socket.IO sweep: %s", exc)

    def sweep(self, now: float | None = None) -> int:
        """Count sessions by client and those in no room; drop those older than the
        connect timeout without a Socket.IO connection, and disconnect those in no
        room past the idle-join time. How many were dropped or disconnected."""
        now = time.monotonic() if now is None else now
        manager = self.server.manager
        dropped = idle = unjoined = 0
        by_client: dict[str, int] = {}
        with self._lock:
            self._recent = {}
        for eio_sid, environ in list(self.server.environ.items()):
            started = environ.get(HANDSHAKE_AT)
            age = now - started if started is not None else 0.0
            sid = manager.sid_from_eio_sid(eio_sid, NAMESPACE)
            if sid is None and self._overdue(age):
                self._drop(eio_sid)
                dropped += 1
                continue
            if sid is not None and not environ.get(WATCHING) and 0 < self.idle_join <= age:
                # The client is told (a DISCONNECT packet) and closes; a session kept
                # open without its Socket.IO connection goes at a later sweep.
                self.server.disconnect(sid, namespace=NAMESPACE, ignore_queue=True)
                idle += 1
                continue
            if not environ.get(WATCHING):
                unjoined += 1
            client = client_of(environ)
            by_client[client] = by_client.get(client, 0) + 1
        self._by_client = by_client
        self._unjoined = unjoined
        if dropped:
            self.dropped += dropped
            log.info("Socket.IO: dropped %s sessions that did not connect within %ss",
                     dropped, self.connect_timeout)
        if idle:
            self.idle_closed += idle
            log.info("Socket.IO: closed %s connections in no room %ss after their handshake",
                     idle, self.idle_join)
        return dropped + idle

    def _overdue(self, age: float) -> bool:
        """True when a session without a Socket.IO connection is past its time: the
        connect timeout, or the idle-join time (it could no longer join in time)."""
        return any(0 < limit <= age for limit in (self.connect_timeout, self.idle_join))

    def _drop(self, eio_sid: str) -> None:
        """Close a session at once, without waiting for its client."""
        eio = self.server.eio
        sock = eio.sockets.pop(eio_sid, None)
        if sock is not None and not sock.closed:
            # wait=False: a polling client that never polls again cannot block us
            sock.close(wait=False, abort=True, reason=eio.reason.SERVER_DISCONNECT)
        self.server.environ.pop(eio_sid, None)

    @staticmethod
    def _refuse(start_response: Callable[..., Any], status: str,
                message: str) -> list[bytes]:
        body = json.dumps({"error": message}).encode()
        start_response(status, [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Retry-After", str(RETRY_AFTER_SECONDS)),
        ])
        return [body]
