"""One process of the Procfile: ``python -m dev.proc web|worker|cron|webhooks|redis``.

``honcho start`` (and ``make run``, through honcho) starts every entry of the
``Procfile`` at once, each through ``dev/proc.sh``, which runs this module in
the project's virtualenv. Before the web process, the worker or the tick
starts, it checks the settings, that Redis answers (the embedded one is given
a moment to start beside it) and that every ``JOB_KINDS`` module loads
(``dev/checks.py``). A failed check is reported once, in one line: by the web
process, which then exits, so honcho stops the others; they wait for that
quietly (and report it themselves after ``QUIET_WAIT`` seconds, when there is
no web process in this start). The web process prints the banner once its
checks passed (``make run`` prints it itself, before honcho starts).

Ctrl-C stops the stack in order. honcho signals every process at once, so the
web process runs gunicorn in a session of its own and, on SIGTERM or SIGINT,
first waits (at most ``WEB_STOP_WAIT`` seconds) until the RQ workers have
stopped (a worker finishes its job first, and that job still reports to the
site), then stops gunicorn; the embedded Redis waits for everyone
(``dev/redis_server.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

import redis
from rq import Queue, Worker

from dev import redis_server
from dev.checks import CheckFailed, banner, check_config, check_kinds, check_redis
from shared import redisconn
from shared.config import WEB, WORKER
from shared.rqconf import rq_queue

EMBEDDED_REDIS_WAIT = 20.0  # seconds for the embedded Redis to answer
QUIET_WAIT = 5.0  # seconds a process other than web keeps a failed check to itself
WEB_STOP_WAIT = 2.5  # seconds the web process waits for the RQ workers to stop
BANNER_SHOWN = "JOBCAST_BANNER_SHOWN"  # set by `make run`, which printed the banner
COMMANDS = {
    "web": ["-m", "gunicorn", "website:create_app()"],
    "worker": ["-m", "worker"],
    "cron": ["-m", "worker.cron"],
    "webhooks": ["-m", "worker", "--webhooks"],
}


def checked(role: str) -> str | None:
    """Run the checks for ``role``; the banner to print (web only), or None."""
    cfg = check_config(WEB if role == "web" else WORKER)
    check_redis(cfg, embedded=not os.environ.get("REDIS_URL", "").strip(),
                wait=EMBEDDED_REDIS_WAIT)
    kinds = check_kinds(cfg.JOB_KINDS)
    if role != "web" or os.environ.get(BANNER_SHOWN):
        return None
    return banner(cfg.SITE_URL, kinds, "./.env", cfg.OPS_TOKEN, ops_token_exported=False)


def main(argv: list[str] | None = None) -> int:
    """Check, then become the process ``argv[0]`` names."""
    args = sys.argv[1:] if argv is None else argv
    role = args[0] if args else ""
    if role == "redis":
        return redis_server.main(args[1:])
    if role not in COMMANDS:
        sys.stderr.write(f"usage: python -m dev.proc {{{','.join([*COMMANDS, 'redis'])}}}\n")
        return 2
    try:
        text = checked(role)
    except CheckFailed as failed:
        if role != "web":
            time.sleep(QUIET_WAIT)  # the web process says it, and honcho stops us meanwhile
        sys.stderr.write(failed.text() + "\n")
        return 1
    if text:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    if role == "web":
        return serve_web()
    os.execv(sys.executable, [sys.executable, *COMMANDS[role]])


def _workers_left(queue: Queue) -> int:
    try:
        return Worker.count(queue=queue)
    except redis.RedisError:
        return 0


def serve_web() -> int:
    """Run gunicorn until SIGTERM or SIGINT; then, once the RQ workers stopped (or after
    ``WEB_STOP_WAIT`` s), stop it at once (SIGINT: gunicorn's quick shutdown)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = subprocess.Popen([sys.executable, *COMMANDS["web"]], start_new_session=True,
                              preexec_fn=redis_server.end_with_parent)
    while not stop.wait(0.2):
        if server.poll() is not None:
            return server.returncode
    cfg = check_config(WEB)
    queue = rq_queue(cfg.QUEUE_NAME, redisconn.connect(cfg.REDIS_URL, socket_timeout=1))
    deadline = time.monotonic() + WEB_STOP_WAIT
    while time.monotonic() < deadline and server.poll() is None and _workers_left(queue):
        time.sleep(0.1)
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
    try:
        return server.wait(WEB_STOP_WAIT)
    except subprocess.TimeoutExpired:
        server.kill()
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
