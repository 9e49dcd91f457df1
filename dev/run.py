"""``make run``: start web, worker and (unless ``REDIS_URL`` is set) Redis with honcho.

Run as ``python -m shared.devrun [process ...]`` from the project directory.

* Variables already in the environment win over ``.env``; ``.env`` only fills
  in what is unset (older files with just two secrets keep working).
* ``SECRET_KEY``, ``PROGRESS_TOKEN``, ``WORKER_TOKEN`` and ``OPS_TOKEN`` set nowhere are
  generated and appended to ``.env`` (mode 600); nothing else is written.
* ``WEB_BIND`` defaults to ``127.0.0.1:$PORT`` (``PORT`` 5000) and ``SITE_URL``
  to the address of ``WEB_BIND``; both are exported, so the worker reaches the
  web process wherever it listens (honcho gives every process its own ``PORT``).
* honcho is started with an empty env file, so it cannot lay ``.env`` over the
  merged environment, and with this Python's ``bin`` first on ``PATH``
  (``JOBCAST_PYTHON`` names this interpreter for the ``Procfile``).
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
from urllib.parse import urlsplit

from honcho.environ import parse as parse_env_file

from shared.config import DEFAULT_REDIS_URL

GENERATED_SECRETS = ("SECRET_KEY", "PROGRESS_TOKEN", "WORKER_TOKEN", "OPS_TOKEN")
# Empty counts as unset for these; OPS_TOKEN= means open.
REQUIRED_SECRETS = ("SECRET_KEY", "PROGRESS_TOKEN", "WORKER_TOKEN")
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

    ``SECRET_KEY`` and ``PROGRESS_TOKEN`` need a value; ``OPS_TOKEN`` set to
    the empty string is left alone (the operator pages stay open). The file is
    created, or kept, with mode 600.
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


def site_url_for(bind: str) -> str:
    """The URL at which a local process reaches a server bound to ``host:port``.

    A wildcard host (``0.0.0.0``, ``::``, empty) becomes the loopback address.
    """
    host, _sep, port = bind.strip().rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def launch_env(environ: Mapping[str, str], file_env: Mapping[str, str],
               python: str) -> dict[str, str]:
    """The environment for honcho: ``.env`` under the environment, plus derived settings."""
    env = {**file_env, **{k: v for k, v in environ.items() if v or k not in REQUIRED_SECRETS}}
    env["PORT"] = env.get("PORT") or DEFAULT_PORT
    env["WEB_BIND"] = env.get("WEB_BIND") or f"127.0.0.1:{env['PORT']}"
    if not env.get("SITE_URL"):
        if bind_port(env["WEB_BIND"]) is None:
            raise LaunchError(f"WEB_BIND={env['WEB_BIND']}: set SITE_URL too, so that the "
                              "worker knows where to reach the site")
        env["SITE_URL"] = site_url_for(env["WEB_BIND"])
    bin_dir = str(Path(python).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", os.defpath)])
    env["JOBCAST_PYTHON"] = python
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def default_processes(env: Mapping[str, str]) -> list[str]:
    """web, worker and cron, plus the embedded Redis when ``REDIS_URL`` is unset."""
    return ["web", "worker", "cron"] if env.get("REDIS_URL") else ["web", "worker", "cron", "redis"]


def check_ports(env: Mapping[str, str], processes: list[str]) -> None:
    """Fail early, with a hint, when a port the stack needs is taken or shared."""
    wanted: list[tuple[str, str, int]] = []
    port = bind_port(env["WEB_BIND"])
    if "web" in processes and port is not None:
        host = env["WEB_BIND"].rpartition(":")[0].strip("[]") or "0.0.0.0"
        wanted.append(("web (set PORT or WEB_BIND)", host, port))
    if "redis" in processes:
        redis_port = urlsplit(env.get("REDIS_URL") or DEFAULT_REDIS_URL).port or 6379
        wanted.append(("embedded Redis (set REDIS_URL, default port 6380)", "127.0.0.1",
                       redis_port))
    if len({p for _name, _host, p in wanted}) < len(wanted):
        raise LaunchError("the web port and the embedded Redis's port are the same: "
                          "change PORT or REDIS_URL")
    for name, host, number in wanted:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            socket.create_server((host, number), family=family).close()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise LaunchError(f"{name}: cannot listen on {host}:{number}: {exc}") from None
            raise LaunchError(f"port {number} on {host} is in use, perhaps by another "
                              f"`make run`: {name}") from None


def banner(env: Mapping[str, str], env_file: Path, written: list[str],
           ops_token_exported: bool) -> str:
    """What to open, and how to get into the dashboard."""
    site = env["SITE_URL"]
    lines = [f"Jobcast: open {site}/  (Ctrl-C stops everything)"]
    if written:
        lines.append(f"  wrote {', '.join(written)} to {env_file} (mode 600)")
    if env.get("OPS_TOKEN"):
        where = "from the environment" if ops_token_exported else f"in {env_file}"
        lines.append(f"  dashboard: {site}/dashboard  (any user name; the password is "
                     f"OPS_TOKEN {where})")
    else:
        lines.append(f"  dashboard: {site}/dashboard  (open: OPS_TOKEN is empty)")
    shown = str(env_file) if env_file.is_absolute() else f"./{env_file}"
    lines.append(f"  shell: set -a; . {shown}; set +a   # loads PROGRESS_TOKEN, OPS_TOKEN")
    return "\n".join(lines)


def honcho_argv(python: str, env: Mapping[str, str], processes: list[str],
                procfile: str) -> list[str]:
    """``python -m honcho`` with no env file of its own, web first on ``PORT``."""
    port = bind_port(env["WEB_BIND"]) or int(env["PORT"])
    return [python, "-m", "honcho", "-e", os.devnull, "-f", procfile,
            "start", "-p", str(port), *processes]


def main(argv: list[str] | None = None) -> None:
    """Prepare the environment and replace this process with honcho."""
    parser = argparse.ArgumentParser(prog="python -m shared.devrun", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("processes", nargs="*", help="Procfile entries (default: all needed)")
    parser.add_argument("--env-file", default=".env", type=Path, help="default: .env")
    parser.add_argument("--procfile", default="Procfile", help="default: Procfile")
    args = parser.parse_args(argv)
    python = sys.executable
    try:
        file_env = read_env_file(args.env_file)
        written = add_missing_secrets(args.env_file, os.environ, file_env)
        if written:
            file_env = read_env_file(args.env_file)
        env = launch_env(os.environ, file_env, python)
        processes = args.processes or default_processes(env)
        check_ports(env, processes)
    except (LaunchError, OSError) as exc:
        raise SystemExit(f"make run: {exc}") from None
    sys.stdout.write(banner(env, args.env_file, written, bool(os.environ.get("OPS_TOKEN"))) + "\n")
    sys.stdout.flush()
    os.execve(python, honcho_argv(python, env, processes, args.procfile), env)


if __name__ == "__main__":
    main()
