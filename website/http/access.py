"""Logging of the web process: to stdout, one line per request with its job id.

``configure_logging`` sends the standard logging module's records to stdout
at ``LOG_LEVEL``. With ``ACCESS_LOG`` on (the default), every request (but
Socket.IO's own, which never reach Flask) is logged once, as
``GET /jobs/<id> 200 3.1ms job=<id>``; health checks, scrapes and static
files at DEBUG so that they do not drown the rest.

Every request's ``wsgi.errors`` is a :class:`LoggingErrorStream` (set by the
site's edge middleware, ``website/http/security.py``): eventlet's websocket
writes notices such as ``socket shutdown error: [Errno 9] Bad file descriptor``
(a browser tab that closed its websocket) there without a trailing newline,
which under gunicorn glued them to the start of the next log line. Each write
becomes one record of this module's logger instead: a client that went away is
INFO, anything else WARNING.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable

from flask import Flask, Response, request

log = logging.getLogger(__name__)
_STARTED = "jobcast.started"
_JOB = "jobcast.job_id"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_QUIET_PREFIXES = ("/healthz", "/metrics", "/static/", "/favicon.ico")
# A connection the client already closed or reset: expected, not a problem.
CLIENT_GONE = re.compile(r"socket shutdown error: \[Errno (9|32|104|107)\]")


def configure_logging(level: str) -> None:
    """Log to stdout at ``level`` (a no-op when the root logger is set up already)."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stdout)
    logging.getLogger().setLevel(level)


def loggable(value: object, limit: int = 64) -> str:
    """``value`` cut to ``limit`` characters with control characters escaped, safe
    to put into a log line (a newline in a request's id cannot forge an entry)."""
    text = str(value)[:limit]
    if text.isprintable():
        return text
    return repr(text)[1:-1]


def request_started() -> float:
    """``time.perf_counter()`` when the current request reached Flask."""
    return float(request.environ.get(_STARTED, time.perf_counter()))


def note_job(job_id: object) -> None:
    """Name the job the current request is about (the callback's ``jobId``)."""
    if isinstance(job_id, str):
        request.environ[_JOB] = job_id


def request_job_id() -> str:
    """The job a request is about: the ``job_id`` URL part or one noted by the view."""
    job_id = request.environ.get(_JOB) or (request.view_args or {}).get("job_id")
    return loggable(job_id) if job_id else "-"


def _start() -> None:
    request.environ[_STARTED] = time.perf_counter()


def _log_request(response: Response) -> Response:
    elapsed_ms = (time.perf_counter() - request_started()) * 1000
    level = logging.DEBUG if request.path.startswith(_QUIET_PREFIXES) else logging.INFO
    if log.isEnabledFor(level):
        log.log(level, "%s %s %s %.1fms job=%s", loggable(request.method, 16),
                loggable(request.path, 200),
                response.status_code, elapsed_ms, request_job_id())
    return response


def register(app: Flask) -> None:
    """Time every request; log it when ``ACCESS_LOG`` is on."""
    app.before_request(_start)
    if app.config["ACCESS_LOG"]:
        app.after_request(_log_request)


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
