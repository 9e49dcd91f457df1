"""The tick process of recurring schedules: ``python -m worker.cron``.

Every ``CRON_TICK_SECONDS`` it claims the schedules that are due
(``shared.schedules.ScheduleStore.claim_due``: each run once, whatever the
number of tick processes) and starts one job of the schedule's kind, as the
site does: stored ``queued`` with its arguments, owner ``schedule:<id>``,
then enqueued for ``worker.runner.run_kind`` with its per-job token. The new
job is announced like any stored change (``shared.events.push_stored``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

import redis
from rq import Queue

from shared.config import WORKER, Config, ConfigError
from shared.enqueue import start_kind_job
from shared.events import push_stored
from shared.schedules import Schedule, ScheduleStore
from shared.store import JobStore

log = logging.getLogger("worker.cron")
TICK_SECONDS = 1.0


class Ticker:
    """Fires due schedules on one Redis."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        client = redis.Redis.from_url(cfg.REDIS_URL, decode_responses=True)
        self.schedules = ScheduleStore(client)
        self.store = JobStore(client, ttl=cfg.JOB_TTL, max_stored=cfg.MAX_STORED_JOBS,
                              log_max=cfg.JOB_LOG_MAX)
        self.queue = Queue(cfg.QUEUE_NAME, connection=redis.Redis.from_url(cfg.REDIS_URL))

    def fire(self, schedule: Schedule) -> str:
        """Start one job of the schedule; its id."""
        state = start_kind_job(self.cfg, self.store, self.queue, schedule.kind, schedule.args,
                               owner=f"schedule:{schedule.schedule_id}")
        job_id = state.job_id
        self.schedules.note_job(schedule.schedule_id, job_id)
        push_stored(self.cfg, self.store, [state])
        log.info("schedule %s (%s): started job %s", schedule.schedule_id, schedule.cron, job_id)
        return job_id

    def tick(self, now: float | None = None) -> list[str]:
        """Fire every schedule due by now; the ids of the jobs started."""
        return [self.fire(schedule) for schedule in self.schedules.claim_due(now)]


def main(argv: list[str] | None = None) -> None:
    """Tick until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m worker.cron", description=__doc__)
    parser.add_argument("--interval", type=float, default=TICK_SECONDS)
    args = parser.parse_args(argv)
    try:
        cfg = Config(role=WORKER)
    except ConfigError as exc:
        raise SystemExit(str(exc)) from exc
    if not cfg.SECRET_KEY:
        raise SystemExit("SECRET_KEY must be set: the ticker signs each job's callback token")
    logging.basicConfig(level=cfg.LOG_LEVEL, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ticker = Ticker(cfg)
    log.info("cron ticker started (every %.1f s)", args.interval)
    while not stop.is_set():
        try:
            ticker.tick()
        except redis.RedisError as exc:
            log.warning("cron tick: Redis unavailable: %s", exc)
        stop.wait(args.interval)
    log.info("cron ticker stopped")


if __name__ == "__main__":
    main()
