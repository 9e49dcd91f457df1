"""``python -m bench.reference [--rounds 3] [--rate N]``: the loaded scenario on the
reference run's code and on today's, beside each other on one machine.

The loaded rows' target (p99 ≤ 25 ms at 1000 callbacks/s) was set and met on the
run of 2026-11-23 (commit ``c1da4b8``), whose probes went one at a time (closed
loop). Since 2026-11-25 ``make bench`` also sends them open-loop, which samples
slow periods as often as quick ones. Whether today's code still meets what the
old code met is a comparison on one machine at one time, not across runs: this
tool extracts the reference commit into ``var/reference/<commit>`` with a
virtualenv of its own pins (``pip install``, once), starts its web process next
to today's on the same Redis (database 1 for the old one), connects 999 clients
to each, and runs the scenario of ``bench/measure_loaded.py`` on both, in
alternating order, with closed-loop and with open-loop probes.

Nothing here is judged by ``make bench``; the figures go to docs/scaling.md.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import requests

from bench import measure_loaded
from bench.floors import Floors
from bench.probe import LatencyProbe
from bench.report import percentile
from bench.stack import ROOT_DIR, BenchStack, Web, measured_load, settle
from bench.swarm import Swarm
from bench.webapp import BARE_PATH
from tests.support import TEST_PROGRESS_TOKEN, TEST_SECRET_KEY, Process, free_port, wait_until

log = logging.getLogger("bench.reference")

REFERENCE_COMMIT = "c1da4b8"  # the run of 2026-11-23 that set the targets
CLIENTS = 999  # plus the probe's own: 1000, as in the bench


def prepare(commit: str, base: Path) -> Path:
    """The reference commit's tree under ``base``, with ``.venv`` of its pins."""
    src = base / commit
    python = src / ".venv" / "bin" / "python"
    installed = src / ".venv" / ".installed"  # written once pip has succeeded
    if installed.exists():
        return src
    src.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT_DIR, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(src, filter="data")
    log.info("virtualenv for %s (pip install -r requirements.txt)", commit)
    subprocess.run([sys.executable, "-m", "venv", str(src / ".venv")], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-r", str(src / "requirements.txt")], check=True)
    installed.touch()
    return src


def start_reference_web(src: Path, redis_url: str, log_dir: Path) -> Web:
    """The reference commit's site (its ``bench.webapp``) under its own gunicorn."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SOCKETIO_", "JOBCAST_", "PROGRESS_", "SITE_", "WORKER_"))}
    env.update({"JOBCAST_ENV": "production", "SECRET_KEY": TEST_SECRET_KEY,
                "PROGRESS_TOKEN": TEST_PROGRESS_TOKEN, "REDIS_URL": redis_url,
                "PORT": str(port), "WEB_BIND": f"127.0.0.1:{port}",
                "SITE_URL": f"http://127.0.0.1:{port}", "ACCESS_LOG": "0",
                "LOG_LEVEL": "INFO", "WORKER_CONNECTIONS": "3000",
                "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(src)})
    proc = Process("web-reference", [str(src / ".venv" / "bin" / "gunicorn"),
                                     "bench.webapp:create_app()"], env, log_dir, cwd=src).start()
    url = env["SITE_URL"] + "/"
    try:
        wait_until(lambda: requests.get(url, timeout=1).status_code == 200, timeout=30,
                   what="the reference web process")
    except TimeoutError:
        proc.stop()
        raise
    return Web("web-reference", env, proc)


def reference_jobs(src: Path, redis_url: str, count: int) -> list[str]:
    """``count`` queued job records written by the reference code's own store."""
    code = ("import sys, redis; from shared.protocol import new_id; "
            "from shared.store import JobStore; "
            "store = JobStore(redis.Redis.from_url(sys.argv[1])); "
            "ids = [new_id() for _ in range(int(sys.argv[2]))]; "
            "[store.create(i, kind='bench') for i in ids]; print(','.join(ids))")
    out = subprocess.run([str(src / ".venv" / "bin" / "python"), "-c", code, redis_url,
                          str(count)], cwd=src, check=True, capture_output=True, text=True)
    return out.stdout.strip().split(",")


def one_run(web: Web, probe: LatencyProbe, watched: list[str], rate: int, seconds: float,
            mode: str) -> dict[str, float]:
    """The scenario once on ``web``: rate achieved, web CPU share, p50 and p99 in ms."""
    worker = web.worker_process()
    cpu = sum(worker.cpu_times()[:2])
    start = time.monotonic()
    if mode == "closed":
        samples, load = measure_loaded.under_load(
            web, watched, rate, seconds, lambda: measure_loaded.closed_loop(probe, seconds))
        lost = 0
    else:
        got, load = measure_loaded.under_load(
            web, watched, rate, seconds,
            lambda: probe.open_loop(seconds, measure_loaded.PROBE_INTERVAL))
        samples, lost = got.latencies, got.lost
    share = (sum(worker.cpu_times()[:2]) - cpu) / (time.monotonic() - start)
    return {"rate": load["rate"], "cpu": share, "p50": statistics.median(samples) * 1000,
            "p99": percentile(samples, 99) * 1000, "n": len(samples), "lost": lost}


def compare(stack: BenchStack, old: Web, src: Path, rounds: int, seconds: float,
            rate: int) -> None:
    """Both sites under the same load, alternating; log each run, then the medians."""
    turns: dict[str, list[float]] = {"today": [], "reference": []}
    for _ in range(3):  # alternating: the machine's drift falls on both
        for name, web in (("reference", old), ("today", stack.a)):
            turns[name].append(measured_load(web, BARE_PATH, 3, 32, tag="floor")["cpu_us"])
    bare = {name: statistics.median(values) for name, values in turns.items()}
    # today's bare CPU scales the load and the target, as in make bench (no round trips)
    floors = Floors(http=[], ping=[], bare={"cpu_us": bare["today"]})
    rate = rate or measure_loaded.asked_rate(floors)
    target = 1000 * (measure_loaded.LOADED.limits(floors)[1] or 0.0)
    log.info("bare endpoint CPU per request: today %.0f µs, reference code %.0f µs; load "
             "%d/s; target p99 ≤ %.1f ms (%g ms there)", bare["today"], bare["reference"],
             rate, target, measure_loaded.LOADED.p99_ms)
    sites = {"today": (stack.a, stack.create_jobs(CLIENTS + 1)),
             "reference": (old, reference_jobs(src, old.env["REDIS_URL"], CLIENTS + 1))}
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with Swarm("127.0.0.1", stack.a.port) as today_swarm, \
            Swarm("127.0.0.1", old.port) as old_swarm:
        for name, swarm in (("today", today_swarm), ("reference", old_swarm)):
            log.info("%s: %s", name, swarm.connect(CLIENTS, sites[name][1][1:]))
        probes = {name: LatencyProbe(web.url, web.port, jobs[0])
                  for name, (web, jobs) in sites.items()}
        try:
            settle(1.0)
            for turn in range(rounds):
                order = list(sites) if turn % 2 == 0 else list(reversed(sites))
                for mode in ("closed", "open"):
                    for name in order:
                        web, jobs = sites[name]
                        got = one_run(web, probes[name], jobs[1:], rate, seconds, mode)
                        results.setdefault((name, mode), []).append(got)
                        log.info("round %d %-6s %-9s: %.0f/s, web %.0f%% of a core, p50 %.2f "
                                 "ms, p99 %.1f ms (n=%d, lost %d)", turn, mode, name,
                                 got["rate"], 100 * got["cpu"], got["p50"], got["p99"],
                                 got["n"], got["lost"])
                        settle(1.0)
        finally:
            for probe in probes.values():
                probe.close()
    for (name, mode), runs in sorted(results.items()):
        p99s = [run["p99"] for run in runs]
        log.info("%-6s %-9s: p99 median %.1f ms (%s); %d of %d within %.1f ms", mode, name,
                 statistics.median(p99s), ", ".join(f"{p:.1f}" for p in p99s),
                 sum(p <= target for p in p99s), len(p99s), target)


def main(argv: list[str] | None = None) -> None:
    """Prepare the reference code, start both sites and compare them."""
    parser = argparse.ArgumentParser(prog="python -m bench.reference")
    parser.add_argument("--commit", default=REFERENCE_COMMIT)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=0,
                        help="callbacks/s (default: 1000/s scaled by the bare capacity)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    src = prepare(args.commit, ROOT_DIR / "var" / "reference")
    log_dir = ROOT_DIR / "var" / "bench-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = BenchStack(log_dir).start()
    old: Web | None = None
    try:
        old = start_reference_web(src, stack.redis.url.rsplit("/", 1)[0] + "/1", log_dir)
        compare(stack, old, src, args.rounds, args.seconds, args.rate)
    finally:
        if old is not None:
            old.proc.stop()
        stack.stop()


if __name__ == "__main__":
    main()
