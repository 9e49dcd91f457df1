"""Each process's Redis connections: the web process's pools and the worker's connection.

* **The web process** (:func:`web_pool`): pools of at most ``REDIS_POOL_SIZE``
  connections where a request that finds none free waits (green under
  eventlet/gevent) up to ``REDIS_POOL_TIMEOUT`` seconds instead of failing at
  once (many claims or callbacks arriving together); after that redis-py raises
  ``ConnectionError`` and the site answers 503. Their connections check for
  unread data without a trip round the event loop (:class:`QuickCheck`).
* **The RQ worker** (:func:`worker_redis`): one connection that rides out a
  Redis restart (:class:`OutageBackoff`).
* **Every other client** (:func:`connect`, :func:`pool`), the rate limiter's
  storage and the Socket.IO message queue (:func:`message_queue`).

``REDIS_URL`` may name Redis Sentinel instead of one server
(:func:`parse_sentinel_url`): ``redis+sentinel://[:password@]host:port,host:port/
service[/db]`` (python-socketio's order, ``/db/service``, is read too). Every
connection then asks the Sentinels for the master when it (re)connects
(redis-py's :class:`~redis.sentinel.SentinelConnectionPool`), and a write that
reaches a demoted master drops the connection, so each process follows a
failover by itself (docs/deploying.md, "Redis with Sentinel").

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
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import AbstractBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

log = logging.getLogger(__name__)

_POLLIN = 0x001  # select.POLLIN; eventlet's select module may lack the constant
FIRST_WAIT = 0.05  # seconds before the first retry; doubled up to MAX_WAIT
MAX_WAIT = 1.0
SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_TIMEOUT = 2.0  # seconds for a Sentinel to answer (connect and reply), then the next
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


class QuickCheckSentinelConnection(QuickCheck, SentinelManagedConnection):
    """A connection to the master Sentinel names, with the quick idle check."""


class SentinelBlockingConnectionPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """redis-py's Sentinel pool with the blocking pool's cap and wait (redis-py has no
    such class; the two compose: the Sentinel pool only picks the address and drops
    connections to a demoted master, the blocking pool only hands connections out)."""


def connection_class(url: str) -> dict[str, Any]:
    """``connection_class=`` for ``ConnectionPool.from_url(url)`` in this process: the
    quick check for ``redis://``, ``unix://`` and Sentinel under eventlet or gevent, else
    nothing (redis-py's own choice)."""
    poll = _original_poll()
    if poll is None:
        return {}
    QuickCheck._poll = staticmethod(poll)  # type: ignore[assignment]
    if url.startswith("redis://"):
        return {"connection_class": QuickCheckConnection}
    if url.startswith("unix://"):
        return {"connection_class": QuickCheckUnixConnection}
    if url.startswith(SENTINEL_SCHEME + "://"):
        return {"connection_class": QuickCheckSentinelConnection}
    return {}


@dataclass(frozen=True)
class SentinelURL:
    """What a ``redis+sentinel://`` URL names: the Sentinels, the service (the master's
    name in their configuration), the database and the passwords."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None  # the master's (and replicas') ACL user and password
    password: str | None = None
    sentinel_username: str | None = None  # the Sentinels' own, when they want one
    sentinel_password: str | None = None

    def master_options(self) -> dict[str, Any]:
        """Connection options for the master (database and credentials)."""
        return {"db": self.db, "username": self.username, "password": self.password}

    def sentinel_options(self) -> dict[str, Any]:
        """Connection options for the Sentinels themselves."""
        return {"username": self.sentinel_username, "password": self.sentinel_password,
                "socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}

    def sentinel(self) -> Sentinel:
        """redis-py's Sentinel client on these Sentinels (it connects on first use)."""
        return Sentinel(list(self.sentinels), sentinel_kwargs=self.sentinel_options())


def parse_sentinel_url(url: str) -> SentinelURL | None:
    """``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``
    (or ``/db/service``, python-socketio's order; the all-digit part is the database),
    with ``?sentinel_password=...`` (and ``sentinel_username``) when the Sentinels want
    a password of their own; None for any other URL. :class:`ValueError` when it is a
    Sentinel URL without Sentinels or service."""
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        return None
    hosts = parts.netloc.rpartition("@")[2]
    sentinels = []
    for item in filter(None, hosts.split(",")):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"a Sentinel must be host:port, not {item!r}")
        sentinels.append((host.strip("[]"), int(port)))
    segments = [unquote(s) for s in parts.path.split("/") if s]
    numbers = [s for s in segments if s.isdigit()]
    names = [s for s in segments if not s.isdigit()]
    if not sentinels or len(names) != 1 or len(numbers) > 1:
        raise ValueError("a Sentinel URL is redis+sentinel://host:port[,host:port...]"
                         "/service[/db]")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return SentinelURL(
        tuple(sentinels), names[0], int(numbers[0]) if numbers else 0,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        query.get("sentinel_username") or None, query.get("sentinel_password") or None)


def connect(url: str, **options: Any) -> redis.Redis:
    """A client on ``url`` (``redis://``, ``unix://`` or Sentinel's master), with redis-py
    ``options`` (``decode_responses=True``, ``socket_timeout``, ``retry``...)."""
    target = parse_sentinel_url(url)
    if target is None:
        return redis.Redis.from_url(url, **options)
    return target.sentinel().master_for(target.service, **target.master_options(), **options)


def pool(url: str, **options: Any) -> redis.ConnectionPool:
    """A connection pool on ``url`` (as :func:`connect`), for libraries that take one."""
    target = parse_sentinel_url(url)
    if target is None:
        return redis.ConnectionPool.from_url(url, **options)
    return SentinelConnectionPool(target.service, target.sentinel(),
                                  **target.master_options(), **options)


def web_pool(cfg: Any, **options: Any) -> redis.BlockingConnectionPool:
    """A web process's pool on ``REDIS_URL``: at most ``REDIS_POOL_SIZE`` connections, a
    wait of ``REDIS_POOL_TIMEOUT`` for a free one, the quick idle check under a green
    library (``options``: e.g. ``decode_responses=True``)."""
    settings = {"max_connections": cfg.REDIS_POOL_SIZE, "timeout": cfg.REDIS_POOL_TIMEOUT,
                "health_check_interval": 30, **connection_class(cfg.REDIS_URL), **options}
    target = parse_sentinel_url(cfg.REDIS_URL)
    if target is None:
        return redis.BlockingConnectionPool.from_url(cfg.REDIS_URL, **settings)
    return SentinelBlockingConnectionPool(target.service, target.sentinel(),
                                          **target.master_options(), **settings)


def message_queue(url: str) -> tuple[str, dict[str, Any]]:
    """``(url, redis_options)`` for python-socketio's ``RedisManager`` on ``url``: a
    Sentinel URL in the form it reads (``/db/service``), the credentials in
    ``redis_options`` (it would not unquote them from the URL); any other URL as it is."""
    target = parse_sentinel_url(url)
    if target is None:
        return url, {}
    hosts = ",".join(f"{host}:{port}" for host, port in target.sentinels)
    options = {"username": target.username, "password": target.password,
               "sentinel_kwargs": target.sentinel_options()}
    return f"{SENTINEL_SCHEME}://{hosts}/{target.db}/{target.service}", options


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
    return connect(cfg.REDIS_URL, retry=outage_retry(cfg.REDIS_RETRY_SECONDS))
