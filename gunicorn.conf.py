"""gunicorn settings for the Jobcast web process, read from the environment.

Run: ``gunicorn 'website:create_app()'`` (this file is picked up from the
working directory). ``ASYNC_MODE`` picks the worker class (eventlet or
gevent), ``WORKER_CONNECTIONS`` the number of simultaneous connections
(Socket.IO clients included) one process serves. The site itself refuses
Socket.IO connections beyond ``SOCKETIO_MAX_CONNECTIONS`` (below
``WORKER_CONNECTIONS``), so HTTP requests always find a free one
(``website/realtime/connections.py``).

In development mode (or with the development secrets) gunicorn must listen on
loopback only, whichever way its address was given (``WEB_BIND``, ``-b``,
``GUNICORN_CMD_ARGS``, a socket passed in): the addresses it really bound are
checked once they are known, before any worker serves (``when_ready``), and
again in each worker (``post_fork``: with ``--reuse-port`` the worker binds).
"""

from __future__ import annotations

import logging
import os
import resource
import time
import warnings
from typing import Any

from shared.config import (
    Config,
    ConfigError,
    beyond_this_machine,
    is_loopback_address,
    site_url_for,
)

# eventlet and gunicorn's eventlet worker warn on import that they are retiring;
# ASYNC_MODE=gevent is the way out (docs/running.md says why eventlet stays for now).
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
warnings.filterwarnings("ignore", message=r"The eventlet worker is deprecated")
log = logging.getLogger("gunicorn.error")


class _AcceptedDeprecation(logging.Filter):
    """Drops gunicorn's own log line about the eventlet worker's deprecation (the
    same notice as the import warning above; nothing for a user to act on here)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eventlet worker is DEPRECATED" not in record.getMessage()


log.addFilter(_AcceptedDeprecation())
ANNOUNCE_WAIT = 10.0  # seconds to wait for Redis (honcho starts it beside the site)

try:
    _cfg = Config()  # fails fast, with a clear message, on a missing secret
except ConfigError as exc:
    raise SystemExit(f"jobcast web: configuration error: {exc}") from None

worker_class = {"eventlet": "eventlet", "gevent": "gevent"}.get(_cfg.ASYNC_MODE, "sync")
workers = 1  # Socket.IO needs sticky sessions: scale with more instances
worker_connections = _cfg.WORKER_CONNECTIONS
bind = _cfg.WEB_BIND
control_socket_disable = True
timeout = 60
graceful_timeout = 5
accesslog = None  # the app logs each request with its job id (website/http/access.py)
loglevel = _cfg.LOG_LEVEL.lower()


def on_starting(server: object) -> None:
    """Let the process hold as many sockets as it is allowed connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _cfg.WORKER_CONNECTIONS + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


WORKER_BOOT_ERROR = 3  # a worker exiting with it makes gunicorn's arbiter stop (halt)


def open_listeners(listeners: list[Any]) -> list[str]:
    """The addresses among gunicorn's ``listeners`` that other machines may reach."""
    return [str(listener) for listener in listeners
            if not is_loopback_address(listener.sock.getsockname())]


def refusal(listeners: list[Any]) -> str | None:
    """Why the site must not serve on ``listeners`` (None: it may)."""
    reachable = open_listeners(listeners) if _cfg.serves_this_machine_only else []
    if not reachable:
        return None
    return ("jobcast web: configuration error: "
            + beyond_this_machine(f"gunicorn's bind {', '.join(reachable)}",
                                  _cfg.is_development))


def when_ready(server: Any) -> None:
    """In the arbiter, once it listens and before any worker serves: refuse an address
    beyond this machine in development mode, and stop."""
    message = refusal(server.LISTENERS)
    if message:
        for listener in server.LISTENERS:
            listener.close()
        raise SystemExit(message)


def post_fork(server: Any, worker: Any) -> None:
    """In each worker, before it loads the site: the same check on the sockets it
    serves (``--reuse-port`` binds them here); gunicorn stops when it fails."""
    message = refusal(worker.sockets)
    if message:
        log.error("%s", message)
        os._exit(WORKER_BOOT_ERROR)


def bound_url(listener: Any) -> str:
    """The URL of a gunicorn listener as a local process reaches it ('' for a unix socket)."""
    address = listener.sock.getsockname()
    if not isinstance(address, tuple):
        return ""
    host, port = address[0], address[1]
    return site_url_for(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")


def announce_address(listeners: list[Any]) -> None:
    """Announce where workers send their callbacks (``shared/siteurl.py``): SITE_URL
    when set, else the address gunicorn really bound (whatever ``-b`` or PORT said)."""
    url = os.environ.get("SITE_URL", "").strip() or next(
        (u for u in map(bound_url, listeners) if u), "")
    if not url:
        log.warning("jobcast: listening on a unix socket without SITE_URL: workers need "
                    "SITE_URL or PROGRESS_URL to reach the site")
        return
    # Imported here, in the serving process after eventlet or gevent patched it: redis-py
    # picks its socket check (select.poll or selectors) when it is imported.
    import redis

    from shared.redisconn import connect
    from shared.siteurl import announce

    client = connect(_cfg.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    deadline = time.monotonic() + ANNOUNCE_WAIT
    try:
        while True:
            try:
                announce(client, url)
                log.info("jobcast: workers without SITE_URL report to %s", url)
                return
            except redis.RedisError as exc:
                if time.monotonic() >= deadline:
                    log.warning("jobcast: could not announce %s in Redis (%s): workers need "
                                "SITE_URL or PROGRESS_URL", url, exc)
                    return
                time.sleep(0.5)
    finally:
        client.close()


def post_worker_init(worker: Any) -> None:
    """In the serving process (after eventlet or gevent patched it): announce the
    site's address, and keep GC pauses short (``website/gcpause.py``)."""
    announce_address(worker.sockets)
    if _cfg.GC_FULL_EVERY > 0:
        from website.gcpause import GcPauses

        GcPauses(_cfg.GC_FULL_EVERY).install()
