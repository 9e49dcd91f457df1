"""``make run`` and ``make setup``: ``python -m dev.run [--setup] [process ...]``.

Run from the project directory with the virtualenv's Python.

* ``SECRET_KEY``, ``PROGRESS_TOKEN``, ``WORKER_TOKEN``, ``OPS_TOKEN`` and
  ``REDIS_PASSWORD`` (the embedded Redis's) set nowhere are generated and
  appended to ``.env`` (mode 600); nothing else is written. ``--setup`` stops
  there (``make setup``: the one-time set-up before ``honcho start``).
* Variables already in the environment win over ``.env``; ``.env`` only fills
  in what is unset (``honcho start`` does the opposite: docs/running.md).
  ``WEB_BIND`` defaults to ``127.0.0.1:$PORT`` (``PORT`` 5000). The worker
  finds the site wherever it listens: the site announces its address in Redis
  (``shared/siteurl.py``).
* Before anything starts it checks, each failure in one line: the web port
  and the embedded Redis's port (``EMBEDDED_REDIS_PORT``) are free, an
  external ``REDIS_URL`` answers, the settings are valid and every
  ``JOB_KINDS`` module loads. Then it prints the banner (with the kinds it
  loaded) and becomes honcho with the ``Procfile``, with an empty env file (so
  honcho cannot lay ``.env`` over the merged environment) and this Python's
  ``bin`` first on ``PATH`` (``JOBCAST_PYTHON`` names this interpreter).
"""

from __future__ import annotations

import argparse
import errno
import os
import secrets
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from honcho.environ import parse as parse_env_file

from dev.checks import CheckFailed, banner, check_config, check_kinds, check_redis
from dev.proc import BANNER_SHOWN
from shared.config import WEB, ConfigError, embedded_redis_port, site_url_for

GENERATED_SECRETS = ("SECRET_KEY", "PROGRESS_TOKEN", "WORKER_TOKEN", "OPS_TOKEN", "REDIS_PASSWORD")
# Empty counts as unset for these; OPS_TOKEN= means open.
REQUIRED_SECRETS = ("SECRET_KEY", "PROGRESS_TOKEN", "WORKER_TOKEN", "REDIS_PASSWORD")
DEFAULT_PORT = "5000"


class LaunchError(RuntimeError):
    """The stack cannot be started as configured (the message says why)."""


def read_env_file(path: Path) -> dict[str, str]:
    """The ``KEY=value`` pairs of ``path`` (honcho's format); empty when it does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return dict(parse_env_file(text))


def _unset(name: str, *sources: Mapping[str, str]) -> bool:
    if name in REQUIRED_SECRETS:
        return not any(source.get(name) for source in sources)
    return not any(name in source for source in sources)


def add_missing_secrets(path: Path, environ: Mapping[str, str],
                        file_env: Mapping[str, str]) -> list[str]:
    """Append a fresh value to ``path`` for each secret set in neither; their names.

    ``SECRET_KEY``, ``PROGRESS_TOKEN``, ``WORKER_TOKEN`` and ``REDIS_PASSWORD`` need a
    value; ``OPS_TOKEN`` set to the empty string is left alone (the operator pages
    stay open). The file is created, or kept, with mode 600.
    """
    missing = [name for name in GENERATED_SECRETS if _unset(name, environ, file_env)]
    if not missing:
        return []
    lines = "".join(f"{name}={secrets.token_urlsafe(32)}\n" for name in missing)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if os.fstat(fd).st_size and not path.read_bytes().endswith(b"\n"):
            lines = "\n" + lines
        os.write(fd, lines.encode())
    finally:
        os.close(fd)
    return missing


def bind_port(bind: str) -> int | None:
    """The TCP port of a gunicorn bind address, or None (unix socket, no port)."""
    _host, sep, port = bind.rpartition(":")
    return int(port) if sep and port.isdigit() and not bind.startswith("unix:") else None


def launch_env(environ: Mapping[str, str], file_env: Mapping[str, str],
               python: str) -> dict[str, str]:
    """The environment for honcho: ``.env`` under the environment, plus derived settings."""
    env = {**file_env, **{k: v for k, v in environ.items() if v or k not in REQUIRED_SECRETS}}
    env["PORT"] = env.get("PORT") or DEFAULT_PORT
    env["WEB_BIND"] = env.get("WEB_BIND") or f"127.0.0.1:{env['PORT']}"
    bin_dir = str(Path(python).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", os.defpath)])
    env["JOBCAST_PYTHON"] = python
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def default_processes(env: Mapping[str, str]) -> list[str]:
    """web, worker, cron and webhooks, plus the embedded Redis when ``REDIS_URL`` is unset."""
    processes = ["web", "worker", "cron", "webhooks"]
    return processes if env.get("REDIS_URL") else [*processes, "redis"]


def check_ports(env: Mapping[str, str], processes: list[str]) -> None:
    """Fail early, naming the setting to change, when a port the stack needs is taken."""
    wanted: list[tuple[str, str, int]] = []
    port = bind_port(env["WEB_BIND"])
    if "web" in processes and port is not None:
        host = env["WEB_BIND"].rpartition(":")[0].strip("[]") or "0.0.0.0"
        wanted.append(("for the site: set PORT (or WEB_BIND) to a free one", host, port))
    if "redis" in processes and not env.get("REDIS_URL"):
        redis_port = embedded_redis_port(env)
        wanted.append(("for the embedded Redis: set EMBEDDED_REDIS_PORT to a free one "
                       "(or REDIS_URL to a Redis of your own)", "127.0.0.1", redis_port))
    if len({p for _name, _host, p in wanted}) < len(wanted):
        raise LaunchError("the web port and the embedded Redis's port are the same: "
                          "change PORT or EMBEDDED_REDIS_PORT")
    for hint, host, number in wanted:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            socket.create_server((host, number), family=family).close()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise LaunchError(f"cannot listen on {host}:{number} ({exc}) {hint}") from None
            raise LaunchError(f"port {number} on {host} is in use, perhaps by another "
                              f"`make run` {hint}") from None


def check_stack(env: dict[str, str], processes: list[str], env_file: Path,
                ops_token_exported: bool) -> str:
    """Every check before honcho starts (:class:`LaunchError` or
    :class:`~dev.checks.CheckFailed`); the banner to print."""
    check_ports(env, processes)
    cfg = check_config(WEB, env)
    if env.get("REDIS_URL"):
        check_redis(cfg, embedded=False)
    kinds = check_kinds(cfg.JOB_KINDS)
    shown = str(env_file) if env_file.is_absolute() else f"./{env_file}"
    site = site_url_for(env["WEB_BIND"]) or env["WEB_BIND"]
    return banner(site, kinds, shown, cfg.OPS_TOKEN, ops_token_exported)


def honcho_argv(python: str, env: Mapping[str, str], processes: list[str],
                procfile: str) -> list[str]:
    """``python -m honcho`` with no env file of its own, web first on ``PORT``."""
    port = bind_port(env["WEB_BIND"]) or int(env["PORT"])
    return [python, "-m", "honcho", "-e", os.devnull, "-f", procfile,
            "start", "-p", str(port), *processes]


def main(argv: list[str] | None = None) -> None:
    """Write the missing secrets; unless ``--setup``, check and become honcho."""
    parser = argparse.ArgumentParser(prog="python -m dev.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("processes", nargs="*", help="Procfile entries (default: all needed)")
    parser.add_argument("--setup", action="store_true",
                        help="only write the missing secrets to the env file")
    parser.add_argument("--env-file", default=".env", type=Path, help="default: .env")
    parser.add_argument("--procfile", default="Procfile", help="default: Procfile")
    args = parser.parse_args(argv)
    python = sys.executable
    try:
        file_env = read_env_file(args.env_file)
        written = add_missing_secrets(args.env_file, os.environ, file_env)
        if written:
            sys.stdout.write(f"Jobcast: wrote {', '.join(written)} to {args.env_file} "
                             "(mode 600)\n")
            file_env = read_env_file(args.env_file)
        if args.setup:
            return
        env = launch_env(os.environ, file_env, python)
        processes = args.processes or default_processes(env)
        text = check_stack(env, processes, args.env_file, bool(os.environ.get("OPS_TOKEN")))
    except (LaunchError, ConfigError, OSError) as exc:
        raise SystemExit(f"Jobcast: {exc}") from None
    except CheckFailed as failed:
        raise SystemExit(failed.text()) from None
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
    env[BANNER_SHOWN] = "1"
    os.execve(python, honcho_argv(python, env, processes, args.procfile), env)


if __name__ == "__main__":
    main()
