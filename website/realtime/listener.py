"""One background listener per web process, started by the first request that needs it.

The relay (``website/realtime/relay.py``) and the claim notifier
(``website/claims/notifier.py``) each keep one Redis pub/sub listener per
web process. It is a Socket.IO background task started lazily, so it runs in
gunicorn's worker (after any fork) and never at import; in-process test apps
(``TESTING`` or ``ASYNC_MODE=threading``) serve no real clients and run none.
"""

from __future__ import annotations

import logging
import os

from flask import Flask

from website.extensions import socketio

log = logging.getLogger(__name__)

SERVED_MODES = ("eventlet", "gevent")  # threading: in-process test apps only


class ProcessListener:
    """Base of a per-process listener: subclasses give :meth:`listen` and ``channel``."""

    channel = ""  # what it listens on, for the log

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.pid: int | None = None  # the process whose listener runs

    @property
    def wanted(self) -> bool:
        """True when this app runs a listener (served by eventlet/gevent, not a test app)."""
        return self.app.config["ASYNC_MODE"] in SERVED_MODES and not self.app.testing

    @property
    def running(self) -> bool:
        """True when this process's listener has been started."""
        return self.pid == os.getpid()

    def ensure_started(self) -> bool:
        """Start this process's listener unless it runs already; True if it runs."""
        pid = os.getpid()
        if self.pid == pid:
            return True
        if not self.wanted:
            return False
        self.pid = pid
        socketio.start_background_task(self.listen)
        log.info("%s: listening on %s in process %s", type(self).__name__, self.channel, pid)
        return True

    def listen(self) -> None:
        """The listener's loop (runs until the process ends)."""
        raise NotImplementedError
