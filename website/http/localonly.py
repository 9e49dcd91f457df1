"""Development mode serves this machine only, whatever server runs the site.

``gunicorn.conf.py`` refuses to serve on an address beyond loopback in development
mode (or with the development secrets). That holds for gunicorn started with this
project's config file only; :class:`ThisMachineOnly` holds for any server (``flask
run --host 0.0.0.0``, gunicorn with another ``-c``, a socket handed over): a request
whose TCP peer is not this machine gets a plain 403. It is the outermost WSGI layer,
so it reads the peer before any ``X-Forwarded-For`` is believed, and it covers
Socket.IO too. Written by hand because no Flask or Werkzeug option restricts peers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from shared.config import is_loopback_address

log = logging.getLogger(__name__)
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
REFUSED = (b"This Jobcast site runs in development mode and serves this machine only: "
           b"run it in production (with its secrets) to serve other machines.\n")


def from_this_machine(environ: dict[str, Any]) -> bool:
    """True when the request's TCP peer is this machine (loopback, or a unix socket)."""
    peer = environ.get("REMOTE_ADDR") or ""
    return not peer or is_loopback_address((str(peer), 0))


class ThisMachineOnly:
    """WSGI middleware: 403 to every request from another machine."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.warned = False

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Pass a request from this machine on; refuse any other."""
        if from_this_machine(environ):
            return self.app(environ, start_response)
        if not self.warned:
            self.warned = True
            log.warning("development mode: refused a request from %s (another machine): "
                        "this site listens beyond loopback", environ.get("REMOTE_ADDR"))
        start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8"),
                                         ("Content-Length", str(len(REFUSED))),
                                         ("X-Content-Type-Options", "nosniff")])
        return [REFUSED]
