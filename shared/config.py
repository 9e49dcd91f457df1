"""Configuration read from the environment, shared by the web site and the worker.

One :class:`Config` object is built per process (``Config()``) and read by both
``website.create_app`` (through ``app.config.from_object``) and ``worker``.
Tests build one with overrides: ``Config(REDIS_URL=..., PROGRESS_TOKEN=...)``.
The settings themselves (name, default, parser, concern, meaning) are declared
once, in ``shared/settings.py``; docs/configuration.md lists them.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any

from shared.settings import (
    BUILTIN_KIND_MODULES,
    DEFAULT_EMBEDDED_REDIS_PORT,
    DEFAULT_REDIS_MAXMEMORY,
    DEV_PROGRESS_TOKEN,
    DEV_SECRET_KEY,
    DEV_WORKER_TOKEN,
    LOOPBACK_HOSTS,
    SETTINGS,
    VISIBILITY_LINK,
    VISIBILITY_OWNER,
    Settings,
    default_socketio_cap,
    embedded_redis_url,
    read_settings,
    site_url_for,
    trusted_hosts,
)
from shared.settingtypes import (
    DEVELOPMENT,
    PRODUCTION,
    WEB,
    WORKER,
    ConfigError,
    Context,
    parse_rate,
)

__all__ = [
    "BUILTIN_KIND_MODULES", "DEFAULT_EMBEDDED_REDIS_PORT", "DEFAULT_REDIS_MAXMEMORY", "DEVELOPMENT",
    "LOOPBACK_HOSTS", "PRODUCTION", "SETTINGS", "VISIBILITY_LINK", "VISIBILITY_OWNER", "WEB",
    "WORKER", "Config", "ConfigError", "beyond_this_machine", "default_socketio_cap",
    "embedded_redis_port", "embedded_redis_url", "is_loopback_address", "parse_rate",
    "site_url_for", "trusted_hosts",
]


def embedded_redis_port(environ: Mapping[str, str]) -> int:
    """``EMBEDDED_REDIS_PORT``: the port of the embedded Redis (``ConfigError`` if bad)."""
    return Settings.EMBEDDED_REDIS_PORT.read(environ, Context(WEB))


def beyond_this_machine(where: str, development: bool) -> str:
    """The refusal of a web site that would listen at ``where``, beyond this machine, in
    development mode (``development``) or with the development secrets."""
    why = (f"JOBCAST_ENV={DEVELOPMENT} is set (operator pages open without OPS_TOKEN, "
           "development secrets allowed)" if development
           else "the built-in development secrets are in use")
    return (f"{where} listens beyond this machine, but {why}: bind to 127.0.0.1, or run "
            "in production with SECRET_KEY, PROGRESS_TOKEN and WORKER_TOKEN set (`make run` "
            "writes them to .env)")


def is_loopback_address(address: object) -> bool:
    """True for a socket address (``getsockname()``) only this machine reaches: a
    loopback IP (IPv4-mapped too) or a unix socket."""
    if not isinstance(address, tuple):
        return True  # a unix socket's path
    try:
        ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


class Config(Settings):
    """All settings, upper-case attributes as Flask expects them.

    Every attribute can be given as a keyword override: a string is read as the
    environment's text would be (parsed, and counted by the values derived from
    it), anything else is taken as it is. Anything not given is read from
    ``environ`` (``os.environ`` by default).
    """

    def __init__(self, environ: Mapping[str, str] | None = None, *, role: str = WEB,
                 **overrides: Any) -> None:
        self.role = role
        env = dict(os.environ if environ is None else environ)
        for key, value in overrides.items():
            if isinstance(value, str):
                env[key] = value
        for name, value in read_settings(env, role).items():
            setattr(self, name, value)
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
        return (self.PROGRESS_TOKEN == DEV_PROGRESS_TOKEN
                or (self.role == WEB and (self.SECRET_KEY == DEV_SECRET_KEY
                                          or self.WORKER_TOKEN == DEV_WORKER_TOKEN)))

    @property
    def serves_this_machine_only(self) -> bool:
        """True when the web site must not be reachable from other machines: development
        mode (open operator pages) or a built-in development secret in use."""
        return self.role == WEB and (self.is_development or self.uses_dev_secrets)

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
        if self.role == WEB and self.WORKER_TOKEN == self.PROGRESS_TOKEN:
            raise ConfigError("WORKER_TOKEN must differ from PROGRESS_TOKEN: WORKER_TOKEN "
                              "reports only for jobs of external kinds, PROGRESS_TOKEN for any")
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
        if (self.serves_this_machine_only and not self.WEB_BIND.startswith("unix:")
                and bind_host not in LOOPBACK_HOSTS):
            raise ConfigError(beyond_this_machine(f"WEB_BIND={self.WEB_BIND}",
                                                  self.is_development))

    def as_dict(self) -> dict[str, Any]:
        """The upper-case settings as a plain dict."""
        return {k: v for k, v in vars(self).items() if k.isupper()}
