"""Caps on Socket.IO sessions, so that HTTP requests are never starved.

gunicorn's eventlet and gevent workers serve each connection in a green
thread from a pool of ``WORKER_CONNECTIONS``. A websocket holds its green
thread for as long as it is open; once the pool is full the worker stops
accepting, and even ``POST /api/progress`` waits. :class:`ConnectionCap`
answers a new Socket.IO handshake with ``503`` (and ``Retry-After``) once
``SOCKETIO_MAX_CONNECTIONS`` connections are open, which keeps the rest of
the pool for plain HTTP requests. Requests of sessions already open always
pass.

Bare Engine.IO handshakes (``GET /socket.io/?EIO=4&transport=polling``) cost
nothing to send, so two more limits keep them from filling the cap: one
client address may hold at most ``SOCKETIO_MAX_PER_CLIENT`` sessions (``429``
beyond), and a sweep, started with the first handshake in each process,
drops every session that has not completed its Socket.IO connect within
``SOCKETIO_CONNECT_TIMEOUT`` seconds.
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

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

RETRY_AFTER_SECONDS = 5


HANDSHAKE_AT = "jobcast.handshake_at"  # environ key: when the session's handshake came
NAMESPACE = "/"


class ConnectionCap:
    """WSGI middleware refusing new Socket.IO sessions beyond the caps.

    ``server`` is the ``socketio.Server``: its ``environ`` (one per Engine.IO
    session) tells who holds which session, its manager whether the session
    completed a Socket.IO connect.
    """

    def __init__(self, app: WSGIApp, limit: int, server: Any, per_client: int,
                 connect_timeout: float, path: str = "/socket.io") -> None:
        self.app = app
        self.limit = limit
        self.server = server
        self.per_client = per_client
        self.connect_timeout = connect_timeout
        self.path = path.rstrip("/") + "/"
        self.in_flight = 0
        self.refused = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._sweeper_pid = 0
        # Sessions per address as of the last sweep, plus handshakes since then:
        # counting every session on each handshake would cost O(sessions).
        self._by_address: dict[str, int] = {}
        self._recent: dict[str, int] = {}

    def sessions(self) -> int:
        """Engine.IO sessions open in this process."""
        return len(self.server.eio.sockets)

    def sessions_of(self, address: str) -> int:
        """Engine.IO sessions opened from ``address`` (as of the last sweep,
        plus the handshakes since)."""
        return self._by_address.get(address, 0) + self._recent.get(address, 0)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Pass the request on, or refuse a new Socket.IO session when full."""
        path = environ.get("PATH_INFO", "")
        if not (path + "/").startswith(self.path):
            return self.app(environ, start_response)
        is_new = "sid" not in parse_qs(environ.get("QUERY_STRING", ""))
        if is_new:
            self._start_sweeper()
            environ[HANDSHAKE_AT] = time.monotonic()
            address = environ.get("REMOTE_ADDR") or ""
            if self.sessions_of(address) >= self.per_client:
                log.info("Socket.IO connection refused: %s holds %s sessions",
                         address, self.per_client)
                return self._refuse(start_response, "429 Too Many Requests",
                                    f"too many live connections from your address "
                                    f"(at most {self.per_client}); retry shortly")
        with self._lock:
            full = self.in_flight >= self.limit or self.sessions() >= self.limit
            if is_new and full:
                self.refused += 1
                refused = self.refused
            else:
                self.in_flight += 1
                refused = 0
                if is_new:
                    address = environ.get("REMOTE_ADDR") or ""
                    self._recent[address] = self._recent.get(address, 0) + 1
        if refused:
            if refused == 1 or refused % 1000 == 0:
                log.warning("Socket.IO connection refused: %s open (limit %s); %s refused",
                            self.in_flight, self.limit, refused)
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
        """Every second or so, count sessions by address and drop those that never
        connected."""
        interval = min(1.0, self.connect_timeout / 2) if self.connect_timeout > 0 else 1.0
        while True:
            self.server.sleep(interval)
            try:
                self.sweep()
            except (KeyError, RuntimeError, OSError) as exc:  # a session closing meanwhile
                log.warning("Socket.IO sweep: %s", exc)

    def sweep(self, now: float | None = None) -> int:
        """Count sessions by address; drop those older than the connect timeout
        without a Socket.IO connection; how many were dropped."""
        now = time.monotonic() if now is None else now
        eio = self.server.eio
        manager = self.server.manager
        dropped = 0
        by_address: dict[str, int] = {}
        with self._lock:
            self._recent = {}
        for eio_sid, environ in list(self.server.environ.items()):
            started = environ.get(HANDSHAKE_AT)
            if (started is None or self.connect_timeout <= 0
                    or now - started < self.connect_timeout
                    or manager.sid_from_eio_sid(eio_sid, NAMESPACE) is not None):
                address = environ.get("REMOTE_ADDR") or ""
                by_address[address] = by_address.get(address, 0) + 1
                continue
            sock = eio.sockets.pop(eio_sid, None)
            if sock is not None and not sock.closed:
                # wait=False: a polling client that never polls again cannot block us
                sock.close(wait=False, abort=True, reason=eio.reason.SERVER_DISCONNECT)
            self.server.environ.pop(eio_sid, None)
            dropped += 1
        self._by_address = by_address
        if dropped:
            self.dropped += dropped
            log.info("Socket.IO: dropped %s sessions that did not connect within %ss",
                     dropped, self.connect_timeout)
        return dropped

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
