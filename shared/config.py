"""Configuration read from the environment, shared by the web site and the worker.

One :class:`Config` object is built per process (``Config()``) and read by both
``website.create_app`` (through ``app.config.from_object``) and ``worker``.
Tests build one with overrides: ``Config(REDIS_URL=..., PROGRESS_TOKEN=...)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

# The kinds Jobcast ships (shared.kinds.BUILTIN_MODULES): always in JOB_KINDS.
BUILTIN_KIND_MODULES = ("shared.kinds.demo", "shared.kinds.csv_import", "shared.kinds.external",
                        "shared.kinds.bulk")
DEVELOPMENT = "development"
PRODUCTION = "production"
DEFAULT_EMBEDDED_REDIS_PORT = 6380  # the embedded Redis of `make run` and the Procfile
DEFAULT_REDIS_MAXMEMORY = "256mb"  # of the embedded Redis (noeviction: full means refused)
WEB = "web"
WORKER = "worker"
VISIBILITY_LINK = "link"    # anyone holding a job's id may read its state
VISIBILITY_OWNER = "owner"  # only its owner and operators (others get 404)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")

# Only ever used when JOBCAST_ENV=development: never a fallback in production.
_DEV_SECRET_KEY = "dev-only-secret-key"
_DEV_PROGRESS_TOKEN = "dev-only-progress-token"
_DEV_WORKER_TOKEN = "dev-only-worker-token"


class ConfigError(RuntimeError):
    """Raised at start-up when the configuration is missing or invalid."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value < 0:
        raise ConfigError(f"{name} must be >= 0, got {value}")
    return value


def _intervals(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"WEBHOOK_BACKOFF must be seconds separated by commas, got {text!r}"
                          ) from None
    if not values or any(v < 1 for v in values):
        raise ConfigError("WEBHOOK_BACKOFF must list at least one interval, each >= 1 second")
    return values


def embedded_redis_port(environ: Mapping[str, str]) -> int:
    """``EMBEDDED_REDIS_PORT``: the port of the embedded Redis (``ConfigError`` if bad)."""
    return _int(environ, "EMBEDDED_REDIS_PORT", DEFAULT_EMBEDDED_REDIS_PORT, minimum=1)


def embedded_redis_url(port: int) -> str:
    """The URL of the embedded Redis (``dev/redis_server.py``) on ``port``."""
    return f"redis://127.0.0.1:{port}/0"


def site_url_for(bind: str) -> str:
    """The URL at which a local process reaches a server bound to ``host:port``.

    A wildcard host (``0.0.0.0``, ``::``, empty) becomes the loopback address;
    a unix socket (``unix:...``) has no URL: ''.
    """
    if bind.startswith("unix:"):
        return ""
    host, _sep, port = bind.strip().rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def default_socketio_cap(worker_connections: int) -> int:
    """Socket.IO connections allowed by default: keep 10% (at least 10) for HTTP."""
    return max(1, worker_connections - max(10, worker_connections // 10))


_RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_rate(text: str, name: str = "RATE_LIMIT") -> tuple[int, int]:
    """``"30/minute"`` -> ``(30, 60)``; ``"5/10"`` -> 5 per 10 s; ``"0"`` -> disabled ``(0, 0)``.

    ``name`` is the setting named in the error message."""
    raw = text.strip().lower()
    if raw in ("0", "off", "none", ""):
        return 0, 0
    count, sep, unit = raw.partition("/")
    unit = unit.strip()
    try:
        limit = int(count)
        window = _RATE_UNITS.get(unit.removesuffix("s")) or int(unit)
    except ValueError as exc:
        raise ConfigError(
            f"{name} must look like '30/minute', '5/second', '100/hour', '10/60' "
            f"(seconds) or '0' to disable; got {text!r}"
        ) from exc
    if not sep or limit < 0 or window <= 0:
        raise ConfigError(f"{name} must be a positive count per window or 0, got {text!r}")
    return (limit, window) if limit else (0, 0)


def trusted_hosts(raw: str, site_url: str, dev: bool) -> list[str]:
    """``TRUSTED_HOSTS`` as a list: the given names, else SITE_URL's host (plus
    localhost and 127.0.0.1 in development). ``*`` accepts any host."""
    given = [h.strip().lower() for h in raw.split(",") if h.strip()]
    if given:
        return [] if "*" in given else given
    host = (urlsplit(site_url).hostname or "").lower()
    hosts = [host] if host else []
    if dev or not host or host in LOOPBACK_HOSTS:
        hosts += [h for h in ("localhost", "127.0.0.1") if h not in hosts]
    return hosts


class Config:
    """All settings, upper-case attributes as Flask expects them.

    Every attribute can be given as a keyword override; anything not given is
    read from ``environ`` (``os.environ`` by default).
    """

    def __init__(self, environ: Mapping[str, str] | None = None, *, role: str = WEB,
                 **overrides: Any) -> None:
        self.role = role
        env = dict(os.environ if environ is None else environ)
        for key, value in overrides.items():
            if isinstance(value, str):
                env[key] = value
        self.JOBCAST_ENV: str = env.get("JOBCAST_ENV", PRODUCTION).strip() or PRODUCTION
        if self.JOBCAST_ENV not in (DEVELOPMENT, PRODUCTION):
            raise ConfigError(f"JOBCAST_ENV must be {DEVELOPMENT!r} or {PRODUCTION!r}")
        dev = self.JOBCAST_ENV == DEVELOPMENT

        self.SECRET_KEY: str = env.get("SECRET_KEY", "") or (_DEV_SECRET_KEY if dev else "")
        self.PROGRESS_TOKEN: str = env.get("PROGRESS_TOKEN", "") or (
            _DEV_PROGRESS_TOKEN if dev else ""
        )
        # External workers (docs/workers.md) claim jobs with this bearer token.
        self.WORKER_TOKEN: str = env.get("WORKER_TOKEN", "") or (_DEV_WORKER_TOKEN if dev else "")
        # A claimed external job goes back on its queue when its worker has not
        # reported for LEASE_SECONDS; after MAX_ATTEMPTS claims it fails.
        self.LEASE_SECONDS: int = _int(env, "LEASE_SECONDS", 30, minimum=1)
        self.MAX_ATTEMPTS: int = _int(env, "MAX_ATTEMPTS", 3, minimum=1)
        # At most this many claims wait for a job at once per web process (0: half
        # of WORKER_CONNECTIONS less SOCKETIO_MAX_CONNECTIONS); more get 503.
        self.CLAIM_MAX_WAITING: int = _int(env, "CLAIM_MAX_WAITING", 0)
        # Completion webhooks (shared/webhooks.py): signed with WEBHOOK_SECRET
        # (unset: webhooks are refused), only to WEBHOOK_ALLOWED_HOSTS (comma-
        # separated names; "*" any public host), retried after each of
        # WEBHOOK_BACKOFF seconds (about a day in all).
        self.WEBHOOK_SECRET: str = env.get("WEBHOOK_SECRET", "") or (
            "dev-only-webhook-secret" if dev else "")
        self.WEBHOOK_ALLOWED_HOSTS: tuple[str, ...] = tuple(
            h.strip() for h in env.get("WEBHOOK_ALLOWED_HOSTS", "").split(",") if h.strip())
        self.WEBHOOK_BACKOFF: tuple[int, ...] = _intervals(
            env.get("WEBHOOK_BACKOFF", "") or "10,60,300,1800,7200,21600,43200")
        # Without REDIS_URL: the embedded Redis (dev/redis_server.py) on EMBEDDED_REDIS_PORT.
        self.EMBEDDED_REDIS_PORT: int = embedded_redis_port(env)
        self.REDIS_URL: str = env.get("REDIS_URL", "") or embedded_redis_url(
            self.EMBEDDED_REDIS_PORT)
        # Socket.IO message queue: set it (usually to REDIS_URL) to run several
        # web processes or let the worker emit directly. Empty: one process.
        self.SOCKETIO_MESSAGE_QUEUE: str = env.get("SOCKETIO_MESSAGE_QUEUE", "")
        # eventlet, gevent or threading; must match gunicorn's worker class.
        self.ASYNC_MODE: str = env.get("ASYNC_MODE", "") or "eventlet"
        self.WEB_BIND: str = env.get("WEB_BIND", "") or f"127.0.0.1:{env.get('PORT') or 5000}"
        # Where the site is reached. The web process derives it from WEB_BIND; a
        # worker without SITE_URL or PROGRESS_URL finds the address the site
        # announced in Redis (shared/siteurl.py), so it follows the site's port.
        explicit_site = env.get("SITE_URL", "").strip().rstrip("/")
        self.SITE_URL: str = explicit_site or (
            site_url_for(self.WEB_BIND) if role == WEB else "")
        self.PROGRESS_URL: str = env.get("PROGRESS_URL", "").strip() or (
            self.SITE_URL + "/api/progress" if self.SITE_URL else "")
        self.QUEUE_NAME: str = env.get("QUEUE_NAME", "") or "jobcast"
        self.DEMO_STEP_DELAY: float = _float(env, "DEMO_STEP_DELAY", 0.4)
        self.JOB_TIMEOUT: int = _int(env, "JOB_TIMEOUT", 30, minimum=1)
        self.JOB_TTL: int = _int(env, "JOB_TTL", 7 * 24 * 3600, minimum=60)
        # Modules declaring job kinds (shared.kinds.job_kind), besides the built-in ones.
        extra_kinds = [m.strip() for m in env.get("JOB_KINDS", "").split(",") if m.strip()]
        self.JOB_KINDS: tuple[str, ...] = tuple(dict.fromkeys([*BUILTIN_KIND_MODULES,
                                                               *extra_kinds]))
        # Lines kept per job log (the oldest go first).
        self.JOB_LOG_MAX: int = _int(env, "JOB_LOG_MAX", 1000, minimum=1)
        self.SNIPPET_TTL: int = _int(env, "SNIPPET_TTL", 7 * 24 * 3600, minimum=60)
        # How long the worker retries one callback before its fallback (write to
        # Redis directly); below JOB_TIMEOUT / 2, so a job's last report fits.
        self.REPORT_RETRY_SECONDS: float = _float(env, "REPORT_RETRY_SECONDS", 10.0)
        # How long the RQ worker retries one Redis command while Redis is down
        # (a restart) before it gives up (worker/redisconn.py).
        self.REDIS_RETRY_SECONDS: float = _float(env, "REDIS_RETRY_SECONDS", 60.0)
        # RQ worker class: fork (a work horse per job) or simple (in-process).
        self.WORKER_CLASS: str = env.get("WORKER_CLASS", "") or "fork"
        self.WORKER_CONNECTIONS: int = _int(env, "WORKER_CONNECTIONS", 1000, minimum=1)
        # At most this many Socket.IO connections per web process (0: the
        # default, WORKER_CONNECTIONS less 10%); new ones beyond it get 503 so
        # that HTTP requests such as the progress callback always find room.
        self.SOCKETIO_MAX_CONNECTIONS: int = _int(env, "SOCKETIO_MAX_CONNECTIONS", 0)
        # How the worker reports progress: http (POST /api/progress, the default
        # and the way for external workers) or direct (apply to Redis and emit
        # through the Socket.IO message queue; needs SOCKETIO_MESSAGE_QUEUE).
        self.WORKER_EMIT: str = env.get("WORKER_EMIT", "") or "http"
        self.LOG_LEVEL: str = (env.get("LOG_LEVEL", "") or "INFO").upper()
        self.ACCESS_LOG: bool = env.get("ACCESS_LOG", "1") not in ("0", "false", "no", "")
        # Operations (see docs/operating.md).
        # OPS_TOKEN, when set, guards /dashboard and /metrics (Bearer or Basic password).
        self.OPS_TOKEN: str = env.get("OPS_TOKEN", "")
        self.DASHBOARD_PAGE_SIZE: int = min(_int(env, "DASHBOARD_PAGE_SIZE", 25, minimum=1), 100)
        # /healthz wants a worker heartbeat newer than this (0: do not check workers).
        self.HEALTH_WORKER_MAX_AGE: int = _int(env, "HEALTH_WORKER_MAX_AGE", 90)
        # RQ worker TTL: an idle worker sends a heartbeat every WORKER_TTL - 15 seconds.
        self.WORKER_TTL: int = _int(env, "WORKER_TTL", 60, minimum=20)
        # /metrics counts jobs by state among this many most recent jobs.
        self.METRICS_JOB_SCAN: int = _int(env, "METRICS_JOB_SCAN", 1000, minimum=1)
        # Hardening: a job whose worker died is failed after this many seconds.
        self.ABANDONED_AFTER: int = _int(env, "ABANDONED_AFTER", 60, minimum=3)
        # Creations (jobs, snippets) per client and window; "0" disables.
        self.RATE_LIMIT: str = env.get("RATE_LIMIT", "30/minute").strip() or "0"
        # The same creations by all clients together (per scope); "0" disables.
        self.RATE_LIMIT_GLOBAL: str = env.get("RATE_LIMIT_GLOBAL", "600/minute").strip() or "0"
        # Reverse proxies in front of the site that set X-Forwarded-For/-Proto/-Host
        # (werkzeug's ProxyFix); 0 (default): the peer address is the client.
        self.TRUSTED_PROXIES: int = _int(env, "TRUSTED_PROXIES", 0)
        # Storage caps (docs/security.md): the highlighted HTML of one snippet,
        # and how many jobs and snippets may be stored at once; beyond them (or
        # once Redis uses STORE_MAX_BYTES, 0: 90% of its maxmemory) creation is 503.
        self.SNIPPET_HTML_MAX: int = _int(env, "SNIPPET_HTML_MAX", 1024 * 1024, minimum=1024)
        self.MAX_STORED_JOBS: int = _int(env, "MAX_STORED_JOBS", 100_000, minimum=1)
        self.MAX_STORED_SNIPPETS: int = _int(env, "MAX_STORED_SNIPPETS", 20_000, minimum=1)
        self.STORE_MAX_BYTES: int = _int(env, "STORE_MAX_BYTES", 0)
        # Each web process's Redis pools (text and bytes): at most this many
        # connections each; a request that finds none free waits up to
        # REDIS_POOL_TIMEOUT seconds for one before it answers 503.
        self.REDIS_POOL_SIZE: int = _int(env, "REDIS_POOL_SIZE", 100, minimum=2)
        self.REDIS_POOL_TIMEOUT: float = _float(env, "REDIS_POOL_TIMEOUT", 5.0)
        # Web process: full garbage collections walk the whole heap only this often
        # (seconds; between them the survivors are frozen: website/http/gcpause.py);
        # 0 leaves CPython's collector as it is.
        self.GC_FULL_EVERY: float = _float(env, "GC_FULL_EVERY", 300.0)
        # maxmemory of the embedded Redis (`python -m dev.redis_server`).
        self.REDIS_MAXMEMORY: str = env.get("REDIS_MAXMEMORY", "").strip() or DEFAULT_REDIS_MAXMEMORY
        # Socket.IO limits: an Engine.IO session that has not completed its
        # Socket.IO connect after this many seconds is dropped; open sessions
        # per client address; rooms per connection; subscribe/watchDashboard
        # events per connection (token bucket: rate per second, burst).
        self.SOCKETIO_CONNECT_TIMEOUT: float = _float(env, "SOCKETIO_CONNECT_TIMEOUT", 5.0)
        self.SOCKETIO_MAX_PER_CLIENT: int = _int(env, "SOCKETIO_MAX_PER_CLIENT", 20, minimum=1)
        self.SOCKETIO_MAX_ROOMS: int = _int(env, "SOCKETIO_MAX_ROOMS", 100, minimum=1)
        self.SOCKETIO_EVENT_RATE: float = _float(env, "SOCKETIO_EVENT_RATE", 10.0)
        self.SOCKETIO_EVENT_BURST: int = _int(env, "SOCKETIO_EVENT_BURST", 20, minimum=1)
        # Who may read a job's state: "link" (anyone with its id) or "owner"
        # (its creator and operators; others get 404). See docs/security.md.
        self.JOB_VISIBILITY: str = (env.get("JOB_VISIBILITY", "") or VISIBILITY_LINK).lower()
        # A per-job callback token is refused once older than this (seconds).
        self.JOB_TOKEN_MAX_AGE: int = _int(env, "JOB_TOKEN_MAX_AGE", 24 * 3600, minimum=60)
        # Seconds a request body may stall between reads before 408 and close.
        self.REQUEST_BODY_TIMEOUT: float = _float(env, "REQUEST_BODY_TIMEOUT", 10.0)
        # Host headers the site answers (comma-separated); others get 400.
        self.TRUSTED_HOSTS: list[str] = trusted_hosts(env.get("TRUSTED_HOSTS", ""),
                                                      self.SITE_URL, dev)

        for key, value in overrides.items():
            if not isinstance(value, str):
                setattr(self, key, value)
        if not self.SOCKETIO_MAX_CONNECTIONS:
            self.SOCKETIO_MAX_CONNECTIONS = default_socketio_cap(self.WORKER_CONNECTIONS)
        self.validate()

    @property
    def is_development(self) -> bool:
        """True when running with development defaults."""
        return self.JOBCAST_ENV == DEVELOPMENT

    @property
    def uses_dev_secrets(self) -> bool:
        """True when a secret this process needs is a built-in development one."""
        return (self.PROGRESS_TOKEN == _DEV_PROGRESS_TOKEN
                or (self.role == WEB and (self.SECRET_KEY == _DEV_SECRET_KEY
                                          or self.WORKER_TOKEN == _DEV_WORKER_TOKEN)))

    def validate(self) -> None:
        """Raise :class:`ConfigError` when a required setting is missing.

        The web site needs ``SECRET_KEY``, ``PROGRESS_TOKEN`` and
        ``WORKER_TOKEN``; the worker signs nothing and needs only ``PROGRESS_TOKEN``.
        """
        if self.role not in (WEB, WORKER):
            raise ConfigError(f"unknown process role {self.role!r}")
        needed = (("SECRET_KEY", "PROGRESS_TOKEN", "WORKER_TOKEN") if self.role == WEB
                  else ("PROGRESS_TOKEN",))
        missing = [name for name in needed if not getattr(self, name)]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} must be set in the environment "
                f"(or run with JOBCAST_ENV={DEVELOPMENT}); `make run` writes them to .env"
            )
        if self.ASYNC_MODE not in ("eventlet", "gevent", "threading"):
            raise ConfigError("ASYNC_MODE must be eventlet, gevent or threading")
        if self.WORKER_CLASS not in ("fork", "simple"):
            raise ConfigError("WORKER_CLASS must be fork or simple")
        if self.WORKER_EMIT not in ("http", "direct"):
            raise ConfigError("WORKER_EMIT must be http or direct")
        if self.WORKER_EMIT == "direct" and not self.SOCKETIO_MESSAGE_QUEUE:
            raise ConfigError("WORKER_EMIT=direct needs SOCKETIO_MESSAGE_QUEUE (a Redis URL)")
        if not 0 < self.SOCKETIO_MAX_CONNECTIONS < self.WORKER_CONNECTIONS:
            raise ConfigError(
                f"SOCKETIO_MAX_CONNECTIONS ({self.SOCKETIO_MAX_CONNECTIONS}) must be above 0 "
                f"and below WORKER_CONNECTIONS ({self.WORKER_CONNECTIONS}), so that HTTP "
                "requests always find a free connection")
        reserve = self.WORKER_CONNECTIONS - self.SOCKETIO_MAX_CONNECTIONS
        if self.CLAIM_MAX_WAITING >= reserve:
            raise ConfigError(
                f"CLAIM_MAX_WAITING ({self.CLAIM_MAX_WAITING}) must be below WORKER_CONNECTIONS "
                f"less SOCKETIO_MAX_CONNECTIONS ({reserve}), so that other HTTP requests "
                "always find a free connection")
        if self.REPORT_RETRY_SECONDS >= self.JOB_TIMEOUT / 2:
            raise ConfigError(
                f"REPORT_RETRY_SECONDS ({self.REPORT_RETRY_SECONDS:g}) must be below "
                f"JOB_TIMEOUT / 2 ({self.JOB_TIMEOUT / 2:g}), so that a job that cannot "
                "reach the site still has time to store its end through the fallback")
        parse_rate(self.RATE_LIMIT)
        parse_rate(self.RATE_LIMIT_GLOBAL, "RATE_LIMIT_GLOBAL")
        if self.JOB_VISIBILITY not in (VISIBILITY_LINK, VISIBILITY_OWNER):
            raise ConfigError(f"JOB_VISIBILITY must be {VISIBILITY_LINK!r} or "
                              f"{VISIBILITY_OWNER!r}, got {self.JOB_VISIBILITY!r}")
        bind_host = self.WEB_BIND.rpartition(":")[0] if ":" in self.WEB_BIND else self.WEB_BIND
        if (self.role == WEB and self.uses_dev_secrets and not self.WEB_BIND.startswith("unix:")
                and bind_host not in LOOPBACK_HOSTS):
            raise ConfigError(
                f"WEB_BIND={self.WEB_BIND} listens beyond this machine but the development "
                "secrets are in use: set SECRET_KEY and PROGRESS_TOKEN (`make run` writes "
                "them to .env) or bind to 127.0.0.1")

    def as_dict(self) -> dict[str, Any]:
        """The upper-case settings as a plain dict."""
        return {k: v for k, v in vars(self).items() if k.isupper()}
