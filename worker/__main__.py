"""Run the Jobcast worker: ``python -m worker [--burst]``; ``--webhooks`` runs the
webhooks worker instead (completion webhooks, on their own queue: ``worker/deliver.py``)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time

import redis
import requests

from shared import tracing
from shared.config import WORKER, Config, ConfigError
from shared.kinds import load_kinds
from shared.kinds.highlight import render
from shared.priority import rq_queue_names
from shared.redisconn import worker_redis
from shared.siteurl import CallbackAddress
from worker import deliver, logsafety
from worker.recovery import make_worker, take_over_name

log = logging.getLogger("worker")


def preload_jobs(cfg: Config, extra: list[str] | None = None) -> None:
    """Import the job modules once in the parent, so forked work horses reuse them."""
    for module in extra or []:
        importlib.import_module(module)
    load_kinds(cfg.JOB_KINDS)  # the job kinds' modules
    # Pygments loads lexers, formatter and style on first use: do it here once,
    # or every forked work horse loads them again (about 40 ms a job).
    for language in ("python", "auto"):
        render("x = 1\n", language)


def wait_for_redis(conn: redis.Redis, timeout: float) -> None:
    """Block until Redis answers PING (honcho starts Redis beside us)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.ping()
            return
        except redis.ConnectionError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"Redis is not reachable: {exc}") from exc
            time.sleep(0.2)


SITE_CHECK_SECONDS = 10.0  # honcho starts web and worker together: give the site a moment


def site_answers(url: str, within: float = SITE_CHECK_SECONDS) -> bool:
    """True when anything answers HTTP at ``url`` (any status counts) within ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        try:
            requests.get(url, timeout=2.0, allow_redirects=False)
            return True
        except requests.RequestException:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)


def callback_url(cfg: Config, conn: redis.Redis, within: float = SITE_CHECK_SECONDS) -> str | None:
    """Where this worker's jobs will report: ``PROGRESS_URL`` (or ``SITE_URL``'s), else the
    address the site announced, waited for up to ``within`` seconds; None when none came."""
    if cfg.PROGRESS_URL:
        return cfg.PROGRESS_URL
    address = CallbackAddress("", conn)
    deadline = time.monotonic() + within
    while (url := address()) is None and time.monotonic() < deadline:
        time.sleep(0.5)
        address.forget()
    return url


def check_callback_address(cfg: Config, conn: redis.Redis) -> bool:
    """Say where the callbacks go, and warn (then go on) when nothing answers there.

    ``GET`` on the callback URL itself (the site answers 405): any HTTP answer
    counts, and the site's health check is not asked, so a start logs no failed
    check before this worker has registered. Skipped with ``WORKER_EMIT=direct``.
    """
    if cfg.WORKER_EMIT == "direct":
        return True
    url = callback_url(cfg, conn)
    if url is None:
        log.warning("no site has announced its address in Redis and neither SITE_URL nor "
                    "PROGRESS_URL is set: progress callbacks will fall back to writing "
                    "Redis directly until a site starts")
        return False
    how = "from SITE_URL or PROGRESS_URL" if cfg.PROGRESS_URL else "announced by the site"
    if not site_answers(url):
        log.warning("nothing answers at the callback URL %s (%s): progress callbacks will fall "
                    "back to writing Redis directly; check SITE_URL and PROGRESS_URL", url, how)
        return False
    log.info("progress callbacks go to %s (%s)", url, how)
    return True


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, connect to Redis and work the queue."""
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    parser.add_argument("--name", help="worker name (default: RQ's)")
    parser.add_argument("--preload", action="append", default=[], metavar="MODULE",
                        help="another job module to import up front (repeatable)")
    parser.add_argument("--webhooks", action="store_true",
                        help="deliver completion webhooks (queue <QUEUE_NAME>-webhooks), "
                             "not jobs")
    args = parser.parse_args(argv)

    try:
        cfg = Config(role=WORKER)  # the worker signs nothing: no SECRET_KEY needed
    except ConfigError as exc:
        raise SystemExit(f"jobcast worker: configuration error: {exc}") from None
    logging.basicConfig(level=cfg.LOG_LEVEL, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logsafety.install()  # RQ attaches job kwargs (the callback token) to failure records
    if cfg.uses_dev_secrets:
        log.warning("DEVELOPMENT SECRETS IN USE: PROGRESS_TOKEN is the built-in development "
                    "value; set it in the environment before running anywhere but locally")
    conn = worker_redis(cfg)  # rides out a Redis restart (shared/redisconn.py)
    wait_for_redis(conn, timeout=60)
    if args.webhooks:
        if args.name:
            take_over_name(cfg, conn, args.name)
        return deliver.serve(cfg, conn, args.name, burst=args.burst)
    # With OTEL_EXPORTER_OTLP_ENDPOINT: traces, and requests and redis instrumented (patched)
    # here, in the parent: forked work horses inherit both (shared/tracing.py).
    tracing.setup(cfg, "jobcast-worker")
    preload_jobs(cfg, args.preload)
    check_callback_address(cfg, conn)
    if args.name:
        take_over_name(cfg, conn, args.name)
    # log_job_description=False: job arguments include the per-job callback token.
    # worker_ttl: an idle worker sends a heartbeat every WORKER_TTL - 15 s (/healthz);
    # recovery (worker/recovery.py) may make it shorter to honour ABANDONED_AFTER.
    # The priorities' queues, highest first: RQ takes from the first one that has a job
    # (shared/priority.py).
    queues = rq_queue_names(cfg.QUEUE_NAME)
    worker = make_worker(cfg, conn, queues, args.name, log_job_description=False,
                         worker_ttl=cfg.WORKER_TTL)
    log.info("worker %s (%s) on queues %s, reporting %s",
             worker.name, cfg.WORKER_CLASS, ", ".join(queues),
             "direct to Redis" if cfg.WORKER_EMIT == "direct" else "over HTTP")
    # with_scheduler: RQ's scheduler (one per queue across workers) moves jobs
    # enqueued with enqueue_in/enqueue_at onto the queue when they are due.
    worker.work(burst=args.burst, logging_level=cfg.LOG_LEVEL, with_scheduler=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
