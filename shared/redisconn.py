"""Each process's Redis connections: the web process's pools and the worker's connection.

* **The web process** (:func:`web_pool`): pools of at most ``REDIS_POOL_SIZE``
  connections where a request that finds none free waits (green under
  eventlet/gevent) up to ``REDIS_POOL_TIMEOUT`` seconds instead of failing at
  once (many claims or callbacks arriving together); after that redis-py raises
  ``ConnectionError`` and the site answers 503. Their connections check for
  unread data without a trip round the event loop (:class:`QuickCheck`).
* **The RQ worker** (:func:`worker_redis`): one connection that rides out a
  Redis restart (:class:`OutageBackoff`).

Why each is needed, measured: docs/scaling.md ("Where a callback's CPU goes":
under eventlet, redis-py's zero-timeout ``can_read`` check made a trip round the
event loop per command; ``tests/test_redisconn.py`` fails when redis-py changes
what :class:`QuickCheck` relies on) and docs/worker.md (RQ retries only its
wait for jobs; every other command now rides out an outage of up to
``REDIS_RETRY_SECONDS``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import AbstractBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

_POLLIN = 0x001  # select.POLLIN; eventlet's select module may lack the constant
FIRST_WAIT = 0.05  # seconds before the first retry; doubled up to MAX_WAIT
MAX_WAIT = 1.0
FIRST_WARNING = 1.0  # seconds of outage before the first warning (one failed try is a reconnect)
LOG_EVERY = 5.0  # seconds of outage between two warnings


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


def web_pool(cfg: Any, **options: Any) -> redis.BlockingConnectionPool:
    """A web process's pool on ``REDIS_URL``: at most ``REDIS_POOL_SIZE`` connections, a
    wait of ``REDIS_POOL_TIMEOUT`` for a free one, the quick idle check under a green
    library (``options``: e.g. ``decode_responses=True``)."""
    return redis.BlockingConnectionPool.from_url(
        cfg.REDIS_URL, max_connections=cfg.REDIS_POOL_SIZE, timeout=cfg.REDIS_POOL_TIMEOUT,
        health_check_interval=30, **connection_class(cfg.REDIS_URL), **options)


def wait_before(failures: int) -> float:
    """Seconds to wait after the ``failures``-th failure in a row."""
    return min(MAX_WAIT, FIRST_WAIT * 2 ** (failures - 1))


def waited_before(failures: int) -> float:
    """Seconds already waited when the ``failures``-th failure in a row happens."""
    return sum(wait_before(n) for n in range(1, failures))


def retries_for(seconds: float) -> int:
    """The number of retries whose waits add up to at least ``seconds``."""
    retries = 0
    while waited_before(retries + 1) < seconds:
        retries += 1
    return retries


class OutageBackoff(AbstractBackoff):
    """Exponential backoff (50 ms doubling to 1 s) that says, now and then, that it waits.

    Stateless apart from its settings: redis-py shares one backoff between the
    pool's connections and the threads that use them.
    """

    def __init__(self, budget: float) -> None:
        self.budget = budget

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutageBackoff) and other.budget == self.budget

    def __hash__(self) -> int:
        return hash((OutageBackoff, self.budget))

    def compute(self, failures: int) -> float:
        """The wait after ``failures`` failures in a row; warns after 1 s, then every 5 s."""
        waited, before = waited_before(failures), waited_before(failures - 1)
        if (before < FIRST_WARNING <= waited
                or int(waited // LOG_EVERY) > int(before // LOG_EVERY)):
            log.warning("Redis has not answered for %.0f s; retrying for up to %g s",
                        waited, self.budget)
        return wait_before(failures)


def outage_retry(seconds: float) -> Retry:
    """A redis-py ``Retry`` that keeps trying a command for about ``seconds``."""
    return Retry(OutageBackoff(seconds), retries_for(seconds))


def worker_redis(cfg: Any) -> redis.Redis:
    """The RQ worker's connection: ``REDIS_URL`` retried for ``REDIS_RETRY_SECONDS``."""
    return redis.Redis.from_url(cfg.REDIS_URL, retry=outage_retry(cfg.REDIS_RETRY_SECONDS))
