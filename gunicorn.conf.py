"""gunicorn settings for the Jobcast web process, read from the environment.

Run: ``gunicorn 'website:create_app()'`` (this file is picked up from the
working directory). ``ASYNC_MODE`` picks the worker class (eventlet or
gevent), ``WORKER_CONNECTIONS`` the number of simultaneous connections
(Socket.IO clients included) one process serves. The site itself refuses
Socket.IO connections beyond ``SOCKETIO_MAX_CONNECTIONS`` (below
``WORKER_CONNECTIONS``), so HTTP requests always find a free one
(``website/http/capacity.py``).
"""

from __future__ import annotations

import resource
import warnings

from shared.config import Config, ConfigError

# eventlet warns on import that it is retiring; ASYNC_MODE=gevent is the way out.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

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


def post_worker_init(worker: object) -> None:
    """Short GC pauses in the serving process (``website/http/gcpause.py``)."""
    if _cfg.GC_FULL_EVERY > 0:
        from website.http.gcpause import GcPauses

        GcPauses(_cfg.GC_FULL_EVERY).install()
