"""What ``make run`` and the Procfile check before anything starts, each in one line.

Every failed check raises :class:`CheckFailed` with one line that names the
setting to look at; a traceback follows only for an error inside a job-kind
module (its own code). :func:`banner` is what a start that passed prints.
"""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import redis

from shared import redisconn
from shared.config import Config, ConfigError
from shared.kinds import JobKind, load_kinds

EXTERNAL_PING_TIMEOUT = 3.0  # seconds for an external Redis to answer


class CheckFailed(Exception):
    """A check that failed: ``line`` says why and what to do; ``detail`` may follow it."""

    def __init__(self, line: str, detail: str = "") -> None:
        super().__init__(line)
        self.line = line
        self.detail = detail

    def text(self) -> str:
        """The line, and the detail below it when there is one."""
        return f"{self.line}\n{self.detail}".rstrip("\n")


def shown_url(url: str) -> str:
    """A Redis URL with its password replaced by ``***`` (for messages)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def check_config(role: str, environ: Mapping[str, str] | None = None) -> Config:
    """The process's settings; :class:`CheckFailed` naming the bad one."""
    try:
        return Config(environ, role=role)
    except ConfigError as exc:
        raise CheckFailed(f"Jobcast: configuration error: {exc}") from None


def check_redis(cfg: Config, embedded: bool, wait: float = 0.0) -> None:
    """Redis answers ``PING`` at ``REDIS_URL`` (the embedded one: within ``wait`` s,
    since it starts beside us); :class:`CheckFailed` otherwise."""
    client = redisconn.connect(cfg.REDIS_URL, socket_timeout=EXTERNAL_PING_TIMEOUT,
                                  socket_connect_timeout=EXTERNAL_PING_TIMEOUT)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                client.ping()
                return
            except redis.AuthenticationError as exc:
                setting = ("REDIS_PASSWORD (the embedded Redis runs with the one it started "
                           "with)" if embedded else "REDIS_URL")
                raise CheckFailed(f"Jobcast: Redis at {shown_url(cfg.REDIS_URL)} refused the "
                                  f"password ({exc}): check {setting}") from None
            except redis.RedisError as exc:
                if time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                if embedded:
                    raise CheckFailed(
                        f"Jobcast: the embedded Redis on port {cfg.EMBEDDED_REDIS_PORT} did not "
                        f"answer within {wait:g} s ({exc}); see the redis process's output, or "
                        "set EMBEDDED_REDIS_PORT to a free port") from None
                raise CheckFailed(
                    f"Jobcast: no Redis answers at REDIS_URL={shown_url(cfg.REDIS_URL)} ({exc}): "
                    "start that Redis, correct REDIS_URL, or unset it to use the embedded "
                    "one") from None
    finally:
        client.close()


def check_kinds(modules: tuple[str, ...]) -> dict[str, JobKind]:
    """Import the ``JOB_KINDS`` modules; their kinds, by name.

    A module that cannot be found is one line (is it on ``PYTHONPATH``?); an
    error inside a module is one line with its traceback below.
    """
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
                raise CheckFailed(
                    f"Jobcast: JOB_KINDS names {module!r}, which cannot be imported: {exc}; "
                    "check the name, and that its directory is on PYTHONPATH "
                    "(docs/kinds.md)") from None
            raise _inside(module, exc) from None
        except Exception as exc:  # noqa: BLE001 - a team's module may raise anything on import
            raise _inside(module, exc) from None
    return load_kinds(modules)


def _inside(module: str, exc: BaseException) -> CheckFailed:
    return CheckFailed(f"Jobcast: JOB_KINDS module {module!r} failed to load: "
                       f"{type(exc).__name__}: {exc}",
                       "".join(traceback.format_exception(exc)))


def banner(site: str, kinds: dict[str, JobKind], env_file: str, ops_token: str,
           ops_token_exported: bool) -> str:
    """What a start that passed its checks prints: where to go, the kinds it loaded,
    how to get into the dashboard and how to load the tokens into a shell."""
    shown = [name for name, kind in kinds.items() if not kind.hidden]
    lines = [f"Jobcast: open {site}/  (Ctrl-C stops everything)",
             f"  kinds: {', '.join(shown)}"]
    if ops_token:
        where = "from the environment" if ops_token_exported else f"in {env_file}"
        lines.append(f"  dashboard: {site}/dashboard  (any user name; the password is "
                     f"OPS_TOKEN {where})")
    else:
        lines.append(f"  dashboard: {site}/dashboard  (open: OPS_TOKEN is empty)")
    lines.append(f"  shell: set -a; . {env_file}; set +a   "
                 "# loads PROGRESS_TOKEN, WORKER_TOKEN, OPS_TOKEN")
    return "\n".join(lines)
