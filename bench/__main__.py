"""``python -m bench [--quick] [--write docs/benchmarks.md] [--only 1,3]``.

Starts Redis and two web processes on free ports (plus workers as needed),
runs the measurements, prints one table and optionally writes it, with the
machine and the command, to a Markdown file.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import floors as floor_step
from bench import (
    measure_after,
    measure_dashboard,
    measure_external,
    measure_fair,
    measure_log,
    measure_many,
    measure_position,
    measure_push,
    measure_retries,
    measure_rooms,
    measure_tracing,
    measure_web,
    measure_workers,
)
from bench.report import Row, markdown, table
from bench.stack import ROOT_DIR, BenchStack
from bench.swarm import Swarm

log = logging.getLogger("bench")


@dataclass(frozen=True)
class Sizes:
    """How much of each measurement a mode does."""

    commands: int
    probes: int
    clients: tuple[int, ...]
    background: float
    fan_out: int
    fan_out_events: int
    throughput_seconds: float
    idle: int
    hold: float
    trivial: dict[str, int]
    highlight: int
    push_jobs: int
    floor_samples: int
    log_seconds: float
    claim_rounds: int
    claims: int
    stored_jobs: int
    batch_jobs: int
    filter_pages: int
    fair_jobs: int = 2000
    retry_jobs: int = 1000
    after_samples: int = 200
    position_queued: int = 10_000
    position_watchers: int = 1000
    position_seconds: float = 15.0
    rooms_rate: int = 2000  # events/s of section 15
    rooms_seconds: float = 4.0
    tracing_rounds: int = 3
    dashboard_stored: int = 1_000_000
    dashboard_rate: int = 1000
    dashboard_samples: int = 100


QUICK = Sizes(commands=100, probes=100, clients=(1, 100, 1000), background=4.0,
              fan_out=1000, fan_out_events=5, throughput_seconds=3.0, idle=2000, hold=0.0,
              trivial={"simple": 300, "fork": 150, "fork-cold": 40}, highlight=60,
              push_jobs=3, floor_samples=200, log_seconds=3.0,
              claim_rounds=50, claims=2000, stored_jobs=100_000, batch_jobs=1000,
              filter_pages=60, fair_jobs=500, after_samples=50, position_watchers=300,
              position_seconds=8.0, tracing_rounds=2, dashboard_stored=100_000,
              dashboard_samples=30)
FULL = Sizes(commands=500, probes=500, clients=(1, 100, 1000), background=15.0,
             fan_out=1000, fan_out_events=30, throughput_seconds=8.0, idle=10000, hold=30.0,
             trivial={"simple": 2000, "fork": 600, "fork-cold": 150}, highlight=300,
             push_jobs=10, floor_samples=500, log_seconds=10.0,
             claim_rounds=200, claims=3000, stored_jobs=1_000_000, batch_jobs=10_000,
             filter_pages=200, rooms_seconds=10.0)


def run(sizes: Sizes, only: set[str]) -> tuple[list[Row], list[str]]:
    """Every selected measurement, on one freshly started stack."""
    rows: list[Row] = []
    notes: list[str] = []
    log_dir = ROOT_DIR / "var" / "bench-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = BenchStack(log_dir).start()
    say = log.info
    try:
        say("0: floors (bare HTTP round trip, Redis PING, bare endpoint rate)")
        floors = floor_step.measure(stack, sizes.floor_samples, sizes.throughput_seconds)
        log.info("  floors: HTTP p50 %.3f ms, PING p50 %.3f ms, bare %.0f µs CPU/request",
                 floors.http_p50 * 1000, floors.ping_p50 * 1000, floors.bare["cpu_us"])
        rows += floors.rows()
        notes.append(floor_step.NOTE)
        if "6" in only:
            say("6: Redis commands per callback")
            rows += measure_web.redis_commands(stack, sizes.commands)
        if "1" in only:
            with Swarm("127.0.0.1", stack.a.port) as swarm:
                say("1: callback → client latency")
                got, text, beside = measure_web.latency(stack, swarm, floors,
                                                        list(sizes.clients), sizes.probes,
                                                        sizes.background, say)
                rows += got
                notes += text
                say("1: fan-out to one room")
                rows += measure_web.fan_out(stack, swarm, beside, sizes.fan_out,
                                            sizes.fan_out_events, say)
        if "2" in only:
            say("2: callback throughput")
            got, text = measure_web.throughput(stack, sizes.throughput_seconds, 32, 100, say)
            rows += got
            notes += text
        if "3" in only:
            say("3: idle connections")
            got, text = measure_web.idle_connections(stack, floors, sizes.idle, sizes.hold,
                                                     say)
            rows += got
            notes += text
        if "4" in only:
            say("4: worker throughput")
            rows += measure_workers.trivial_jobs(stack, floors, sizes.trivial, say)
            got, text = measure_workers.highlight_jobs(stack, sizes.highlight, say)
            rows += got
            notes += text
        if "5" in only:
            say("5: push against polling")
            got, text = measure_push.push_vs_poll(stack, floors, sizes.push_jobs, say)
            rows += got
            notes += text
        if "7" in only:
            say("7: job logs")
            rows += measure_log.stream(stack, floors, sizes.log_seconds, 1000, say)
            rows += measure_log.cost(stack, sizes.throughput_seconds, say)
            notes.append(measure_log.NOTE)
        if "8" in only:
            say("8: external workers")
            rows += measure_external.claim_round_trip(stack, floors, sizes.claim_rounds, say)
            rows += measure_external.claims_per_second(stack, sizes.claims, say)
            rows += measure_external.batched(stack, sizes.throughput_seconds, say)
            rows += measure_external.idle_claims(stack, floors, 1000, sizes.probes, say)
            notes.append(measure_external.NOTE)
        if "10" in only:
            say("10: fair share (a victim's wait behind another owner's batch)")
            rows += measure_fair.victim_wait(stack, sizes.fair_jobs, 5, say)
            notes.append(measure_fair.NOTE)
        if "11" in only:
            say("11: a retry storm (1,000 jobs failing at once) and the callback p99 meanwhile")
            rows += measure_retries.storm(stack, floors, sizes.retry_jobs, say)
            notes.append(measure_retries.NOTE)
        if "12" in only:
            say("12: a waiting job's start after its last dependency succeeded")
            rows += measure_after.waiting_start(stack, floors, sizes.after_samples, say)
            notes.append(measure_after.NOTE)
        if "13" in only:
            say("13: position upkeep (the places of watched jobs among 10,000 queued)")
            rows += measure_position.upkeep(stack, floors, sizes.position_queued,
                                            sizes.position_watchers, sizes.position_seconds,
                                            say)
            notes.append(measure_position.NOTE)
        if "15" in only:
            say("15: each web process hears only its rooms (message queue, a channel per room)")
            rows += measure_rooms.run(stack, sizes.rooms_rate, sizes.rooms_seconds, say)
            notes.append(measure_rooms.NOTE)
        if "16" in only:
            say("16: traces: callback CPU with tracing off (against today's code) and on")
            rows += measure_tracing.callback_cpu(stack, sizes.throughput_seconds,
                                                 sizes.tracing_rounds, say)
            notes.append(measure_tracing.NOTE)
        if "14" in only:  # next to last: it fills Redis with 1M jobs (emptied first, as for 9)
            assert stack.client is not None
            stack.client.flushdb(asynchronous=True)  # (a blocking flush of 1M jobs times out)
            say("14: the dashboard over many stored jobs, with 1,000 jobs ending a second")
            rows += measure_dashboard.run(stack, floors, sizes.dashboard_stored,
                                          sizes.dashboard_rate, sizes.dashboard_samples, say)
            notes.append(measure_dashboard.NOTE)
        if "9" in only:  # last: it fills Redis with many jobs
            assert stack.client is not None  # from an empty store: the sections above
            stack.client.flushdb(asynchronous=True)  # leave their jobs behind (14: 1M)
            say("9: many jobs (a batch's pushes, memory per job, filters)")
            rows += measure_many.run(stack, floors, sizes.stored_jobs, sizes.batch_jobs,
                                     sizes.filter_pages, say)
            notes.append(measure_many.NOTE)
    finally:
        stack.stop()
    if "6" in only:
        notes.append(
            "Redis commands (6): `MONITOR` while a series of applied callbacks runs with "
            "nothing else running, between two `ECHO` markers; \"sent\" counts the commands "
            "that came from the connections to Redis of the process doing the work (the web "
            "process's gunicorn worker, found with psutil, or the bench process for the "
            "direct reporter): each one is a round trip. The commands the store's Lua script "
            "runs inside Redis (MONITOR shows them as `lua`) are listed apart, as are "
            "commands from any other client in the window.")
    rows.sort(key=lambda r: int(r.section) if r.section.isdigit() else -1)
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run, print the table, write the file."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smaller samples (about 2 minutes), for development")
    parser.add_argument("--write", metavar="PATH", help="also write the results as Markdown")
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16",
                        help="comma-separated measurement numbers (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        stream=sys.stderr)
    sizes = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"
    load_at_start = os.getloadavg()
    started = time.monotonic()
    rows, notes = run(sizes, {s.strip() for s in args.only.split(",") if s.strip()})
    seconds = time.monotonic() - started
    sys.stdout.write(table(rows) + "\n")
    if args.write:
        command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
        path = Path(args.write)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown(rows, notes, command.strip(), mode, seconds, load_at_start))
        log.info("wrote %s", path)
    log.info("done in %.0f s", seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
