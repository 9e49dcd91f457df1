"""A cap on Socket.IO connections, so that HTTP requests are never starved.

gunicorn's eventlet and gevent workers serve each connection in a green
thread from a pool of ``WORKER_CONNECTIONS``. A websocket holds its green
thread for as long as it is open; once the pool is full the worker stops
accepting, and even ``POST /api/progress`` waits. :class:`ConnectionCap`
answers a new Socket.IO handshake with ``503`` (and ``Retry-After``) once
``SOCKETIO_MAX_CONNECTIONS`` connections are open, which keeps the rest of
the pool for plain HTTP requests. Requests of sessions already open always
pass.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

RETRY_AFTER_SECONDS = 5


class ConnectionCap:
    """WSGI middleware refusing new Socket.IO sessions beyond ``limit`` with 503."""

    def __init__(self, app: WSGIApp, limit: int, sessions: Callable[[], int],
                 path: str = "/socket.io") -> None:
        self.app = app
        self.limit = limit
        self.sessions = sessions
        self.path = path.rstrip("/") + "/"
        self.in_flight = 0
        self.refused = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Pass the request on, or refuse a new Socket.IO session when full."""
        path = environ.get("PATH_INFO", "")
        if not (path + "/").startswith(self.path):
            return self.app(environ, start_response)
        is_new = "sid" not in parse_qs(environ.get("QUERY_STRING", ""))
        with self._lock:
            full = self.in_flight >= self.limit or self.sessions() >= self.limit
            if is_new and full:
                self.refused += 1
                refused = self.refused
            else:
                self.in_flight += 1
                refused = 0
        if refused:
            if refused == 1 or refused % 1000 == 0:
                log.warning("Socket.IO connection refused: %s open (limit %s); %s refused",
                            self.in_flight, self.limit, refused)
            return self._refuse(start_response)
        try:
            return self.app(environ, start_response)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _refuse(self, start_response: Callable[..., Any]) -> list[bytes]:
        body = json.dumps({"error": "too many live connections on this server; "
                           "retry shortly"}).encode()
        start_response("503 Service Unavailable", [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Retry-After", str(RETRY_AFTER_SECONDS)),
        ])
        return [body]
