"""Reading request bodies: JSON with hard limits on size and shape, and a read timeout.

gunicorn's ``timeout`` does not apply to the eventlet and gevent workers, and
their body reads block for as long as the client keeps the connection open: a
client that sends the headers and part of a body, then stalls, holds a
connection (one of ``WORKER_CONNECTIONS``) forever. :class:`BodyReadTimeout`
gives every read of a request body at most ``REQUEST_BODY_TIMEOUT`` seconds:
it sets that timeout on the client socket (gunicorn hands it over as
``environ["gunicorn.socket"]``) while a request with a body is handled, and
turns a timed-out read into ``408 Request Timeout``. gunicorn then closes the
connection. Requests without a body (websocket upgrades included) are not
touched; outside gunicorn it does nothing. Behind nginx its
``client_body_timeout`` does the same, but a site reached directly needs this.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

log = logging.getLogger(__name__)
_TIMED_OUT = (TimeoutError, socket.timeout)

_LIMITS = "jobcast.body_limits"


def allow_body(app: Flask, max_bytes: int, *endpoints: str) -> None:
    """Let ``endpoints`` take bodies up to ``max_bytes`` (the site's default is lower).

    Applied before any other hook reads the body (the CSRF check reads forms).
    """
    limits: dict[str, int] = app.extensions.setdefault(_LIMITS, {})
    for endpoint in endpoints:
        if endpoint not in app.view_functions:
            raise ValueError(f"body limit for unknown endpoint {endpoint}")
        limits[endpoint] = max_bytes


def apply_body_limit() -> None:
    """``before_request``: the endpoint's own body limit, if it has one."""
    limit = current_app.extensions.get(_LIMITS, {}).get(request.endpoint or "")
    if limit:
        request.max_content_length = limit


def size_text(size: int) -> str:
    """``5242880`` -> ``"5 MB"``; ``524288`` -> ``"512 KB"``."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.3g} MB"
    return f"{size // 1024} KB"


def read_json_body(max_bytes: int) -> object | None:
    """The request's JSON body (any content type), None when it is not valid JSON text.

    Raises 413 when the body is over ``max_bytes``, also for a chunked body
    without ``Content-Length`` (which werkzeug would otherwise cut silently).
    Refused as not JSON: bad UTF-8, nesting too deep for Python, and strings
    with lone surrogates (``"\\ud800"``), which no store could encode.
    """
    request.max_content_length = max_bytes + 1
    raw = request.get_data(cache=True)
    if len(raw) > max_bytes:
        raise RequestEntityTooLarge()
    try:
        body = json.loads(raw)
        if _may_not_encode(raw):
            json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeError is a ValueError
        return None
    return body


def _may_not_encode(raw: bytes) -> bool:
    """Whether decoded JSON text could hold what encoding it back refuses.

    A lone surrogate comes only from a backslash-u escape, from the UTF-8 bytes
    of a surrogate (starting with 0xED, which ``json.loads`` lets through) or
    from UTF-16/32 text (which has NUL bytes); deep nesting needs many brackets.
    A usual report has none of these and skips the second pass.
    """
    return (b"\\u" in raw or b"\xed" in raw or b"\x00" in raw
            or raw.count(b"[") + raw.count(b"{") > 32)


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
