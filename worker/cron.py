"""The tick process of recurring schedules: ``python -m worker.cron``.

Every ``CRON_TICK_SECONDS`` it claims the schedules that are due
(``shared.schedules.ScheduleStore.claim_due``: each run once, whatever the
number of tick processes) and starts one job of the schedule's kind through
the lifecycle, as the site starts jobs (``shared/lifecycle/``: an external
kind goes to its queue, an RQ kind runs with its own timeout), with owner
``schedule:<id>``.

Each tick also runs the watch of running jobs (``shared/watch.py``): a job asked
to stop that has not within ``CANCEL_GRACE`` is stopped by force, and a job that
has not reported within its ``stall_after`` is marked stalled (or, for a kind with
``stall_fails``, failed). Both read only the due head of a sorted set.

And each tick samples the queue depth into the dashboard's history
(``shared/history.py``: one short script, the queued jobs' count as each current
bucket's peak).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from types import FrameType

import redis

from shared import tracing, watch
from shared.config import WORKER, Config, ConfigError
from shared.errors import JobcastError
from shared.history import DepthSampler
from shared.schedules import Schedule, ScheduleStore
from shared.unique import DEDUPLICATED
from worker.core import lifecycle

log = logging.getLogger("worker.cron")
TICK_SECONDS = 1.0
HEAL_SECONDS = 30.0  # leaked concurrency slots are freed this often (shared/concurrency.py)


class Ticker:
    """Fires due schedules on one Redis."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.lifecycle = lifecycle(cfg)
        self.schedules = ScheduleStore(self.lifecycle.client)
        self.depth = DepthSampler(self.lifecycle.client)  # the dashboard's queue-depth chart
        self._heal_at = 0.0  # monotonic time of the next concurrency-slot heal

    def fire(self, schedule: Schedule) -> str:
        """Start one job of the schedule; its id."""
        state = self.lifecycle.start(schedule.kind, schedule.args,
                                     owner=f"schedule:{schedule.schedule_id}", room=False)
        if state.extra.get(DEDUPLICATED):  # its kind's unique arguments found a job
            log.info("schedule %s: job %s of the same unique arguments has not ended; "
                     "none started", schedule.schedule_id, state.job_id)
            return state.job_id
        self.schedules.note_job(schedule.schedule_id, state.job_id)
        log.info("schedule %s (%s): started job %s", schedule.schedule_id, schedule.cron,
                 state.job_id)
        return state.job_id

    def tick(self, now: float | None = None) -> list[str]:
        """Fire every schedule due by now; the ids of the jobs started. Now and then,
        also free concurrency slots whose jobs ended without giving them back."""
        if self.lifecycle.limits.active and time.monotonic() >= self._heal_at:
            self._heal_at = time.monotonic() + HEAL_SECONDS
            if self.lifecycle.heal_slots():
                log.info("concurrency: held jobs let through by healing their slots")
        started = []
        for schedule in self.schedules.claim_due(now):
            try:
                started.append(self.fire(schedule))
            except JobcastError as exc:  # its kind left JOB_KINDS, say
                log.warning("schedule %s (%s): no job started: %s", schedule.schedule_id,
                            schedule.kind, exc)
        watch.tick(self.lifecycle, now)
        self.depth.sample(now)
        return started


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
    tracing.setup(cfg, "jobcast-tick")  # with OTEL_EXPORTER_OTLP_ENDPOINT: a scheduled
    # start's trace begins at its enqueue span
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
