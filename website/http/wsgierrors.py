"""``wsgi.errors`` as log records, one per write.

eventlet's websocket writes notices such as ``socket shutdown error: [Errno 9]
Bad file descriptor`` (a browser tab that closed its Socket.IO websocket) to
the request's ``wsgi.errors`` stream, without a trailing newline. Under
gunicorn that stream is stderr, so the notice was glued to the start of the
next log line. This middleware gives every request a ``wsgi.errors`` that
logs each write as one record of this module's logger: a client that went
away is INFO, anything else WARNING.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)

# A connection the client already closed or reset: expected, not a problem.
CLIENT_GONE = re.compile(r"socket shutdown error: \[Errno (9|32|104|107)\]")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class LoggingErrorStream:
    """A file-like ``wsgi.errors``: each ``write`` becomes one log record."""

    def write(self, data: str | bytes) -> int:
        """Log ``data`` (trailing newlines dropped; blank writes ignored)."""
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        message = text.rstrip("\r\n")
        if message.strip():
            level = logging.INFO if CLIENT_GONE.search(message) else logging.WARNING
            log.log(level, "%s", message)
        return len(data)

    def writelines(self, lines: Iterable[str | bytes]) -> None:
        """Log each line as its own record."""
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        """Nothing is buffered."""


class ErrorsToLogging:
    """WSGI middleware: the wrapped app sees a :class:`LoggingErrorStream` as ``wsgi.errors``."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.stream = LoggingErrorStream()

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Swap the error stream, then call the app."""
        environ["wsgi.errors"] = self.stream
        return self.app(environ, start_response)
