"""Redis connections whose idle check does not go round the event loop.

Before each command redis-py checks that a pooled connection holds no unread
data (``Connection.can_read(0)``: a reply left over from an interrupted command
would otherwise be read as the answer to the next one). Under eventlet, which
removes ``select.poll``, redis-py falls back to ``selectors``, whose green
``select`` registers the socket with the hub and switches to it even with a
zero timeout: one trip round the event loop per command. In the web process
under callbacks that was about 5% of its CPU and 0.1 ms of each callback's
latency (docs/scaling.md, "Where a callback's CPU goes").

:class:`QuickCheck` answers that zero-timeout check with the kernel's own
``poll`` (the one the event library replaced), and leaves everything else to
redis-py: a socket with data or a hang-up, a check with a timeout (a blocking
wait must stay green), TLS sockets (which buffer above the kernel) and any
parser but hiredis. Only the green web process uses it
(:func:`connection_class`); ``tests/test_redisconn.py`` fails when redis-py
changes what it relies on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import redis

_POLLIN = 0x001  # select.POLLIN; eventlet's select module may lack the constant


def _original_poll() -> Callable[[], Any] | None:
    """The unpatched ``select.poll`` of an eventlet or gevent process (None: no green
    library replaced it, and redis-py's own check already calls the real one)."""
    if "eventlet" in sys.modules:
        from eventlet import patcher

        if patcher.is_monkey_patched("select"):
            return patcher.original("select").poll  # type: ignore[no-any-return]
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("select"):
            return monkey.get_original("select", "poll")  # type: ignore[no-any-return]
    return None


class QuickCheck:
    """Mixin for a redis-py connection class: ``can_read(0)`` by a real ``poll``."""

    _poll: Callable[[], Any] | None = None

    def can_read(self, timeout: float = 0) -> bool:
        """Whether unread data (or a hang-up) waits on the connection."""
        sock = getattr(self, "_sock", None)
        reader = getattr(getattr(self, "_parser", None), "_reader", None)
        poll = self._poll
        if (timeout or poll is None or sock is None or reader is None
                or hasattr(sock, "pending") or reader.has_data()):
            return super().can_read(timeout)  # type: ignore[misc, no-any-return]
        poller = poll()
        poller.register(sock.fileno(), _POLLIN)
        if not poller.poll(0):
            return False  # nothing buffered, nothing on the socket: what redis-py says too
        return super().can_read(timeout)  # type: ignore[misc, no-any-return]


class QuickCheckConnection(QuickCheck, redis.Connection):
    """A TCP connection with the quick idle check."""


class QuickCheckUnixConnection(QuickCheck, redis.UnixDomainSocketConnection):
    """A Unix socket connection with the quick idle check."""


def connection_class(url: str) -> dict[str, Any]:
    """``connection_class=`` for ``ConnectionPool.from_url(url)`` in this process: the
    quick check for ``redis://`` and ``unix://`` under eventlet or gevent, else nothing
    (redis-py's own choice)."""
    poll = _original_poll()
    if poll is None:
        return {}
    QuickCheck._poll = staticmethod(poll)  # type: ignore[assignment]
    if url.startswith("redis://"):
        return {"connection_class": QuickCheckConnection}
    if url.startswith("unix://"):
        return {"connection_class": QuickCheckUnixConnection}
    return {}
