"""A read timeout for request bodies.

gunicorn's ``timeout`` does not apply to the eventlet and gevent workers, and
their body reads block for as long as the client keeps the connection open: a
client that sends the headers and part of a body, then stalls, holds a
connection (one of ``WORKER_CONNECTIONS``) forever.

:class:`BodyReadTimeout` gives every read of a request body at most
``REQUEST_BODY_TIMEOUT`` seconds: it sets that timeout on the client socket
(gunicorn hands it over as ``environ["gunicorn.socket"]``) while a request with
a body is handled, and turns a timed-out read into ``408 Request Timeout``.
gunicorn then closes the connection (it cannot drain the rest of the body
within its keep-alive time). Requests without a body (websocket upgrades
included) are not touched; outside gunicorn it does nothing.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from werkzeug.exceptions import RequestTimeout

log = logging.getLogger(__name__)
_TIMED_OUT = (TimeoutError, socket.timeout)


class BodyTimedOut(RequestTimeout):
    """The client stopped sending its request body (a 408 for Flask's error pages)."""

    description = "The request body did not arrive in time."


class _TimedInput:
    """``wsgi.input`` whose reads raise :class:`BodyTimedOut` on a socket timeout."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, *args: Any) -> bytes:
        """Read like the wrapped stream."""
        try:
            return bytes(self._stream.read(*args))
        except _TIMED_OUT:
            raise BodyTimedOut from None

    def readline(self, *args: Any) -> bytes:
        """Read a line like the wrapped stream."""
        try:
            return bytes(self._stream.readline(*args))
        except _TIMED_OUT:
            raise BodyTimedOut from None

    def readlines(self, *args: Any) -> list[bytes]:
        """Read lines like the wrapped stream."""
        try:
            return list(self._stream.readlines(*args))
        except _TIMED_OUT:
            raise BodyTimedOut from None

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


def _has_body(environ: dict[str, Any]) -> bool:
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return True
    try:
        return int(environ.get("CONTENT_LENGTH") or 0) > 0
    except ValueError:
        return False


class BodyReadTimeout:
    """WSGI middleware: request bodies must arrive within ``timeout`` seconds per read."""

    def __init__(self, app: Callable[..., Iterable[bytes]], timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Handle the request with a timeout on the client socket while it has a body."""
        sock = environ.get("gunicorn.socket")
        if not self.timeout or sock is None or not _has_body(environ):
            return self.app(environ, start_response)
        previous = sock.gettimeout()
        sock.settimeout(self.timeout)
        environ["wsgi.input"] = _TimedInput(environ["wsgi.input"])
        try:
            return self.app(environ, start_response)
        except BodyTimedOut:  # raised outside Flask (engine.io's polling POST)
            log.info("request body of %s stalled for %ss: 408, connection closed",
                     environ.get("REMOTE_ADDR", "?"), self.timeout)
            body = b"Request Timeout: the request body did not arrive in time\n"
            start_response("408 Request Timeout", [("Content-Type", "text/plain"),
                                                   ("Content-Length", str(len(body)))])
            return [body]
        finally:
            sock.settimeout(previous)
