"""Every setting, declared once, grouped by concern.

Each attribute of :class:`Settings` is a :class:`~shared.settingtypes.Setting`:
the environment variable of the same name, its default, how its text is parsed,
its concern, a one-line meaning, and ``deploy=True`` for the few a real
deployment sets. ``shared.config.Config`` (a ``Settings``) reads them all;
docs/configuration.md lists them in one table, checked against this one by
``tests/test_configuration_doc.py``. Settings are read in the order declared:
a derived default (``derive``) may use only the settings above it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from shared.settingtypes import (
    DEVELOPMENT,
    PRODUCTION,
    WEB,
    ConfigError,
    Context,
    Setting,
    flag,
    integer,
    intervals,
    names,
    number,
    one_of,
    origins,
    secret,
    text,
)

# The kinds Jobcast ships (shared.kinds.BUILTIN_MODULES): always in JOB_KINDS.
BUILTIN_KIND_MODULES = ("shared.kinds.demo", "shared.kinds.csv_import", "shared.kinds.external",
                        "shared.kinds.bulk", "shared.kinds.highlight")
DEFAULT_EMBEDDED_REDIS_PORT = 6380  # the embedded Redis of `make run` and the Procfile
DEFAULT_REDIS_MAXMEMORY = "256mb"  # of the embedded Redis (noeviction: full means refused)
VISIBILITY_LINK = "link"    # anyone holding a job's id may read its state
VISIBILITY_OWNER = "owner"  # only its owner and operators (others get 404)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")

# Only ever used when JOBCAST_ENV=development: never a fallback in production.
DEV_SECRET_KEY = "dev-only-secret-key"
DEV_PROGRESS_TOKEN = "dev-only-progress-token"
DEV_WORKER_TOKEN = "dev-only-worker-token"
DEV_WEBHOOK_SECRET = "dev-only-webhook-secret"

SECRETS_AND_ACCESS = "Secrets and access"
REDIS = "Redis"
WEB_PROCESS = "Web process"
SOCKETIO_LIMITS = "Socket.IO limits"
JOBS = "Jobs"
WORKER_PROCESS = "Worker"
EXTERNAL_WORKERS = "External workers"
LIMITS_AND_STORAGE = "Limits and storage"
WEBHOOKS = "Webhooks"
OPERATIONS = "Operations"
CONCERNS = (SECRETS_AND_ACCESS, REDIS, WEB_PROCESS, SOCKETIO_LIMITS, JOBS, WORKER_PROCESS,
            EXTERNAL_WORKERS, LIMITS_AND_STORAGE, WEBHOOKS, OPERATIONS)


def embedded_redis_url(port: int, password: str = "") -> str:
    """The URL of the embedded Redis (``dev/redis_server.py``) on ``port``, with its
    ``requirepass`` password when it has one."""
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}127.0.0.1:{port}/0"


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


# -- derived values: (the value read, the settings above) -> the value ---------------


def _host_names(_name: str, raw: str) -> list[str]:
    return [h.lower() for h in names(_name, raw)]


def _hosts(given: list[str], ctx: Context) -> list[str]:
    return trusted_hosts(",".join(given), ctx["SITE_URL"], ctx.dev)


def _redis_url(url: str, ctx: Context) -> str:
    return url or embedded_redis_url(ctx["EMBEDDED_REDIS_PORT"], ctx["REDIS_PASSWORD"])


def _web_bind(bind: str, ctx: Context) -> str:
    return bind or f"127.0.0.1:{ctx['PORT']}"


def _site_url(url: str, ctx: Context) -> str:
    return url or (site_url_for(ctx["WEB_BIND"]) if ctx.role == WEB else "")


def _progress_url(url: str, ctx: Context) -> str:
    return url or (ctx["SITE_URL"] + "/api/progress" if ctx["SITE_URL"] else "")


def _subscriptions(name: str, raw: str) -> str:
    """``rooms``, ``all`` or a number of groups ≥ 1 (``shared.roomqueue.groups_of``)."""
    value = raw.strip().lower()
    if value in ("rooms", "all") or (value.isdigit() and int(value) >= 1):
        return value
    raise ConfigError(f"{name} must be rooms, all or a number of groups of rooms (1 or more)")


def _with_builtin_kinds(modules: tuple[str, ...], _ctx: Context) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*BUILTIN_KIND_MODULES, *modules]))


class Settings:
    """The table of settings; :class:`shared.config.Config` gives them values.

    ``deploy=True`` marks the settings whose value differs between a laptop and
    a real deployment: the secrets (built-in or written by ``make run`` in
    development), where Redis is, where the site listens and is reached, the
    proxy in front of it and the queue joining several web processes. The rest
    have defaults that hold in production too.
    """

    # -- Secrets and access --------------------------------------------------------
    JOBCAST_ENV = Setting(SECRETS_AND_ACCESS, PRODUCTION, one_of(DEVELOPMENT, PRODUCTION),
                          "`development` allows the built-in development-only secrets, "
                          "and serves this machine only")
    SECRET_KEY = Setting(SECRETS_AND_ACCESS, "", secret,
                         "signs sessions and per-job callback tokens",
                         deploy=True, development=DEV_SECRET_KEY, shown="none (required)")
    PROGRESS_TOKEN = Setting(SECRETS_AND_ACCESS, "", secret,
                             "shared bearer token of the progress callback",
                             deploy=True, development=DEV_PROGRESS_TOKEN, shown="none (required)")
    WORKER_TOKEN = Setting(SECRETS_AND_ACCESS, "", secret,
                           "bearer token of external workers: claims, heartbeats, reports "
                           "(jobs of external kinds only)",
                           deploy=True, development=DEV_WORKER_TOKEN,
                           shown="none (required by the site)")
    OPS_TOKEN = Setting(SECRETS_AND_ACCESS, "", secret,
                        "the operator token: guards `/dashboard`, `/metrics` and the operator API",
                        deploy=True, shown="empty (operator pages closed in production)")
    JOB_VISIBILITY = Setting(SECRETS_AND_ACCESS, VISIBILITY_LINK,
                             text(lambda s: s.strip().lower()),
                             "who reads a job's state: `link` (anyone with its id) or `owner`")
    JOB_TOKEN_MAX_AGE = Setting(SECRETS_AND_ACCESS, 24 * 3600, integer(60),
                                "seconds a per-job callback token is accepted after signing")
    WATCH_TOKEN_SECONDS = Setting(SECRETS_AND_ACCESS, 3600, integer(60),
                                  "seconds a watch token (read one job: docs/embedding.md) "
                                  "is accepted after signing")

    # -- Redis ---------------------------------------------------------------------
    EMBEDDED_REDIS_PORT = Setting(REDIS, DEFAULT_EMBEDDED_REDIS_PORT, integer(1),
                                  "port of the embedded Redis, used when `REDIS_URL` is unset")
    REDIS_PASSWORD = Setting(REDIS, "", secret,
                             "the embedded Redis's password (`requirepass`), in the derived "
                             "`REDIS_URL`", shown="empty (`make run` writes one to `.env`)")
    REDIS_URL = Setting(REDIS, "", text(), "Redis for the queue and all state",
                        deploy=True, derive=_redis_url,
                        shown="`redis://:$REDIS_PASSWORD@127.0.0.1:$EMBEDDED_REDIS_PORT/0` "
                        "(the embedded one)")
    REDIS_POOL_SIZE = Setting(REDIS, 100, integer(2),
                              "connections per Redis pool of each web process")
    REDIS_POOL_TIMEOUT = Setting(REDIS, 5.0, number,
                                 "seconds a request waits for a pooled connection, then 503")
    REDIS_MAXMEMORY = Setting(REDIS, DEFAULT_REDIS_MAXMEMORY, text(),
                              "`maxmemory` of the embedded Redis (`python -m dev.redis_server`)")

    # -- Web process ---------------------------------------------------------------
    PORT = Setting(WEB_PROCESS, 5000, integer(0), "the web port when `WEB_BIND` is unset")
    WEB_BIND = Setting(WEB_PROCESS, "", text(), "gunicorn's bind address",
                       deploy=True, derive=_web_bind, shown="`127.0.0.1:$PORT`")
    SITE_URL = Setting(WEB_PROCESS, "", text(lambda s: s.strip().rstrip("/")),
                       "the site's own origin, and where workers report",
                       deploy=True, derive=_site_url,
                       shown="web: the address of `WEB_BIND`; worker: the one the site "
                       "announced in Redis")
    TRUSTED_HOSTS: Setting[list[str]] = Setting(
        WEB_PROCESS, [], _host_names, "`Host` names the site answers (others 400); `*` any",
        derive=_hosts, shown="`SITE_URL`'s host (+ loopback names in development)")
    EMBED_ORIGINS: Setting[tuple[str, ...]] = Setting(
        WEB_PROCESS, (), origins, "comma-separated origins whose pages may embed the "
        "progress element (its script, watch-token reads, Socket.IO); empty: none",
        shown="empty (none)")
    TRUSTED_PROXIES = Setting(WEB_PROCESS, 0, integer(0),
                              "reverse proxies whose `X-Forwarded-*` headers are believed",
                              deploy=True)
    SOCKETIO_MESSAGE_QUEUE = Setting(WEB_PROCESS, "", text(),
                                     "Redis URL joining several web processes; empty: one",
                                     deploy=True)
    SOCKETIO_SUBSCRIPTIONS = Setting(
        WEB_PROCESS, "rooms", _subscriptions,
        "with a message queue, which events a web process receives: `rooms` (those of rooms "
        "its clients are in), a number N (those of N hashed groups of rooms), `all`")
    ASYNC_MODE = Setting(WEB_PROCESS, "eventlet", text(),
                         "`eventlet` or `gevent`: gunicorn's worker class")
    WORKER_CONNECTIONS = Setting(WEB_PROCESS, 1000, integer(1),
                                 "simultaneous connections per web process")
    REQUEST_BODY_TIMEOUT = Setting(WEB_PROCESS, 10.0, number,
                                   "seconds a request body may stall between reads (`0`: no limit)")
    GC_FULL_EVERY = Setting(WEB_PROCESS, 300.0, number,
                            "seconds between full garbage collections (`0`: CPython's own)")

    # -- Socket.IO limits ----------------------------------------------------------
    SOCKETIO_MAX_CONNECTIONS = Setting(SOCKETIO_LIMITS, 0, integer(0),
                                       "Socket.IO connections per web process; beyond it 503",
                                       shown="`WORKER_CONNECTIONS` − 10% (at least 10 less)")
    SOCKETIO_MAX_PER_CLIENT = Setting(SOCKETIO_LIMITS, 20, integer(1),
                                      "Socket.IO sessions per client address and web process")
    SOCKETIO_CONNECT_TIMEOUT = Setting(SOCKETIO_LIMITS, 5.0, number,
                                       "seconds a session may wait for its Socket.IO connect")
    SOCKETIO_IDLE_JOIN_SECONDS = Setting(SOCKETIO_LIMITS, 5.0, number,
                                         "seconds from its handshake a connection may be in "
                                         "no room before it is closed (`0`: never)")
    SOCKETIO_WATCHER_SHARE = Setting(SOCKETIO_LIMITS, 50, integer(0, cap=100),
                                     "percent of `SOCKETIO_MAX_CONNECTIONS` kept for "
                                     "connections that watch a room")
    SOCKETIO_MAX_ROOMS = Setting(SOCKETIO_LIMITS, 100, integer(1),
                                 "rooms (jobs, snippets, dashboard) one connection may be in")
    SOCKETIO_EVENT_RATE = Setting(SOCKETIO_LIMITS, 10.0, number,
                                  "`subscribe`/`watchDashboard` per connection and second")
    SOCKETIO_EVENT_BURST = Setting(SOCKETIO_LIMITS, 20, integer(1),
                                   "their burst per connection")
    SOCKETIO_REPLAY_BYTES = Setting(SOCKETIO_LIMITS, 4 * 1024 * 1024, integer(0),
                                    "bytes of log replay per connection and minute "
                                    "(`0`: no limit)")

    # -- Jobs ----------------------------------------------------------------------
    JOB_KINDS: Setting[tuple[str, ...]] = Setting(
        JOBS, BUILTIN_KIND_MODULES, names, "modules declaring job kinds, besides the built-in",
        derive=_with_builtin_kinds, shown="the built-in kinds only")
    QUEUE_NAME = Setting(JOBS, "jobcast", text(), "the RQ queue")
    JOB_TIMEOUT = Setting(JOBS, 30, integer(1), "RQ job timeout, seconds")
    JOB_TTL = Setting(JOBS, 7 * 24 * 3600, integer(60), "seconds job states are kept")
    JOB_LOG_MAX = Setting(JOBS, 1000, integer(1), "lines kept per job log (the oldest go first)")
    SNIPPET_TTL = Setting(JOBS, 7 * 24 * 3600, integer(60),
                          "seconds snippets (source and highlighted HTML) are kept")
    DEMO_STEP_DELAY = Setting(JOBS, 0.4, number, "seconds between the demo job's steps")
    FAIR_SHARE_DEPTH = Setting(JOBS, 1, integer(1),
                               "jobs of one tenant waiting in a queue at once (fair share)")
    CANCEL_GRACE = Setting(JOBS, 10.0, number,
                           "seconds a running job has to stop once cancelled; then it is stopped "
                           "by force")
    STALL_AFTER = Setting(JOBS, 300.0, number,
                          "seconds without a report after which a running job shows as stalled "
                          "(a kind may declare its own; `0`: never)")

    # -- Worker --------------------------------------------------------------------
    WORKER_CLASS = Setting(WORKER_PROCESS, "fork", text(),
                           "`fork` (a work horse per job) or `simple` (in-process)")
    WORKER_EMIT = Setting(WORKER_PROCESS, "http", text(),
                          "how the worker reports: `http` or `direct` (Redis + message queue)")
    PROGRESS_URL = Setting(WORKER_PROCESS, "", text(), "the callback URL the worker reports to",
                           derive=_progress_url, shown="`$SITE_URL/api/progress`")
    REPORT_RETRY_SECONDS = Setting(WORKER_PROCESS, 10.0, number,
                                   "seconds one callback is retried before the fallback")
    REDIS_RETRY_SECONDS = Setting(WORKER_PROCESS, 60.0, number,
                                  "seconds the worker retries a command while Redis is down")
    WORKER_TTL = Setting(WORKER_PROCESS, 60, integer(20),
                         "RQ worker TTL: an idle worker's heartbeat every `WORKER_TTL` − 15 s")
    ABANDONED_AFTER = Setting(WORKER_PROCESS, 60, integer(3),
                              "seconds after which a job whose worker died is failed")

    # -- External workers ----------------------------------------------------------
    LEASE_SECONDS = Setting(EXTERNAL_WORKERS, 30, integer(1),
                            "seconds an external worker may stay silent before it loses its job")
    MAX_ATTEMPTS = Setting(EXTERNAL_WORKERS, 3, integer(1),
                           "claims of one external job before a lapsed lease fails it")
    CLAIM_MAX_WAITING = Setting(EXTERNAL_WORKERS, 0, integer(0),
                                "claims waiting for a job at once per web process; beyond it 503",
                                shown="half of `WORKER_CONNECTIONS` − `SOCKETIO_MAX_CONNECTIONS`")

    # -- Limits and storage --------------------------------------------------------
    RATE_LIMIT = Setting(LIMITS_AND_STORAGE, "30/minute", text(),
                         "creations, retries and cancels per client (`0`: no limit)", blank="0")
    RATE_LIMIT_GLOBAL = Setting(LIMITS_AND_STORAGE, "600/minute", text(),
                                "the same, for all clients together", blank="0")
    SNIPPET_HTML_MAX = Setting(LIMITS_AND_STORAGE, 1024 * 1024, integer(1024),
                               "bytes of highlighted HTML one snippet may store")
    MAX_STORED_JOBS = Setting(LIMITS_AND_STORAGE, 100_000, integer(1), "jobs stored at once")
    MAX_STORED_SNIPPETS = Setting(LIMITS_AND_STORAGE, 20_000, integer(1),
                                  "snippets stored at once")
    STORE_MAX_BYTES = Setting(LIMITS_AND_STORAGE, 0, integer(0),
                              "Redis memory past which creation is refused (`0`: 90% of maxmemory)")
    QUOTA_JOBS = Setting(LIMITS_AND_STORAGE, 4000, integer(0),
                         "jobs one owner (a session, an API key) may have stored (`0`: none)")
    QUOTA_BYTES = Setting(LIMITS_AND_STORAGE, 10 * 1024 * 1024, integer(0),
                          "bytes one owner's jobs and snippets may store (`0`: no quota)")
    QUOTA_SNIPPETS = Setting(LIMITS_AND_STORAGE, 800, integer(0),
                             "snippets one owner may have stored (`0`: no quota)")
    QUOTA_ADDRESS_FACTOR = Setting(LIMITS_AND_STORAGE, 2, integer(1),
                                   "an address's quotas (all anonymous callers), in owner quotas")
    BATCH_ITEMS_PER_MINUTE = Setting(LIMITS_AND_STORAGE, 1000, integer(0),
                                     "batch items one owner may start per minute (`0`: no limit)")

    # -- Webhooks ------------------------------------------------------------------
    WEBHOOK_SECRET = Setting(WEBHOOKS, "", secret,
                             "signs completion webhooks (`X-Jobcast-Signature`)",
                             development=DEV_WEBHOOK_SECRET, shown="empty (webhooks refused)")
    WEBHOOK_ALLOWED_HOSTS: Setting[tuple[str, ...]] = Setting(
        WEBHOOKS, (), names, "hosts webhooks may call; `*` any public host")
    WEBHOOK_BACKOFF: Setting[tuple[int, ...]] = Setting(
        WEBHOOKS, (10, 60, 300, 1800, 7200, 21600, 43200), intervals,
        "seconds before each retry of a failed webhook")
    WEBHOOK_DEADLINE = Setting(WEBHOOKS, 15, integer(1, cap=600),
                               "seconds one delivery may take in all (then it is retried)")

    # -- Operations ----------------------------------------------------------------
    LOG_LEVEL = Setting(OPERATIONS, "INFO", text(lambda s: s.strip().upper()), "logging level")
    ACCESS_LOG = Setting(OPERATIONS, True, flag, "one log line per request, with its job id",
                         blank=False)
    DASHBOARD_PAGE_SIZE = Setting(OPERATIONS, 25, integer(1, cap=100),
                                  "jobs per dashboard page (at most 100)")
    HEALTH_WORKER_MAX_AGE = Setting(OPERATIONS, 90, integer(0),
                                    "seconds since a worker's heartbeat for `/healthz` (`0`: none)")
    METRICS_JOB_SCAN = Setting(OPERATIONS, 1000, integer(1),
                               "recent jobs `/metrics` counts by state")
    OTEL_EXPORTER_OTLP_ENDPOINT = Setting(OPERATIONS, "", text(),
                                          "OTLP/HTTP collector for traces; empty: no tracing")
    OTEL_SERVICE_NAME = Setting(OPERATIONS, "", text(),
                                "service name of the traces (empty: `jobcast-web`, "
                                "`jobcast-worker`...)")
    WORKER_GONE_AFTER = Setting(OPERATIONS, 90, integer(1),
                                "seconds unseen after which the dashboard shows a worker gone")
    WORKER_DROP_AFTER = Setting(OPERATIONS, 3600, integer(1),
                                "seconds unseen after which a gone worker is dropped")


SETTINGS: tuple[Setting[Any], ...] = tuple(
    value for value in vars(Settings).values() if isinstance(value, Setting))


def read_settings(environ: Mapping[str, str], role: str) -> dict[str, Any]:
    """Every setting's value in ``environ``, in the order declared (``ConfigError`` if bad)."""
    context = Context(role)
    for setting in SETTINGS:
        context.values[setting.name] = setting.read(environ, context)
    return context.values
