"""Job logs (7): a fast log reaching a watcher, a late joiner's replay, and what
log lines cost a callback.

* A job logging 1,000 lines a second for 10 s, reported as its context would
  with a short flush: 10 lines every 10 ms (an open-loop schedule), each line
  stamped with the time its callback was sent. A client in another process
  follows the log (``bench/logwatch.py``) and measures each line's latency; every
  line must arrive, in order, once.
* A late joiner: with the newest ``JOB_LOG_MAX`` (1,000) lines stored, a fresh
  client connects with ``lastLogId=0-0``; from the start of its connect until it
  holds all 1,000 lines.
* Callbacks carrying 10 log lines each against callbacks with none, closed loop
  on one web process with 100 clients watching: CPU per request, as in (2).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

import requests

from bench import loads
from bench.floors import Floors, LatencyTarget
from bench.report import Row, p50_p99
from bench.stack import ROOT_DIR, BenchStack
from tests.support import TEST_PROGRESS_TOKEN

Log = Callable[[str], None]

STREAM = LatencyTarget(p99_ms=25)
LATE = LatencyTarget(p50_ms=50, label="median")
COST_ROUNDS = 4  # turns of each kind in the cost row
LINES_TARGET = 0.8
LOG_KEPT = 1000


def _watch(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bench.logwatch", *args], cwd=ROOT_DIR,
                            stdout=subprocess.PIPE, text=True)


def stream(stack: BenchStack, floors: Floors, seconds: float, per_second: int,
           log: Log) -> list[Row]:
    """The fast log and the late joiner."""
    web = stack.a
    job_id = stack.create_jobs(1)[0]
    total = int(seconds * per_second)
    batch, period = 10, 10 / per_second
    watcher = _watch("follow", "--url", web.url, "--job", job_id, "--expect", str(total),
                     "--timeout", str(seconds + 60))
    assert watcher.stdout is not None
    watcher.stdout.readline()  # {"ready": true}: connected and in the room
    session = requests.Session()
    headers = {"Authorization": f"Bearer {TEST_PROGRESS_TOKEN}"}
    start = time.perf_counter()
    late_posts = 0
    for k in range(total // batch):
        due = start + k * period
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        elif pause < -period:
            late_posts += 1
        sent = time.time()
        lines = [f"n={k * batch + i} t={sent:.6f} a log line of a typical length"
                 for i in range(batch)]
        session.post(web.url + "/api/progress", headers=headers, timeout=10, json={
            "jobId": job_id, "state": "running", "current": (k + 1) * batch, "total": total,
            "log": lines})
    result = json.loads(watcher.communicate(timeout=120)[0].splitlines()[-1])
    samples = result["latencies"]
    complete = result["lines"] == total and result["in_order"]
    log(f"  log stream: {result['lines']} of {total} lines, in order {result['in_order']}, "
        f"{p50_p99(samples)}; {late_posts} callbacks sent late")
    rows = [Row("7", f"a job logging {per_second} lines/s for {seconds:.0f} s (10 lines every "
                     f"{period * 1000:.0f} ms) → a watching client, per line",
                f"{p50_p99(samples)}; {result['lines']} of {total} lines, "
                f"{'in order, once' if complete else 'NOT complete and in order'}",
                STREAM.text(floors), STREAM.met(floors, samples) and complete,
                why="each batch is one callback, one Lua script and one push: the latency "
                    "is the callback's; see (1) for what makes it up",
                floor=floors.latency_floor(), ratio=floors.latency_ratio(samples))]
    late = _watch("late", "--url", web.url, "--job", job_id, "--expect", str(LOG_KEPT),
                  "--rounds", "20")
    out = json.loads(late.communicate(timeout=300)[0].splitlines()[-1])
    times, counts = out["seconds"], out["lines"]
    log(f"  late joiner: {p50_p99(times)}; lines {set(counts)}")
    rows.append(Row("7", f"a late joiner: connect and receive the last {LOG_KEPT} lines "
                         "(20 times)",
                    f"{p50_p99(times)}; {min(counts)}–{max(counts)} lines",
                    LATE.text(floors), LATE.met(floors, times) and min(counts) >= LOG_KEPT,
                    why="the connect (handshake and websocket upgrade) plus one XRANGE and "
                        "one emit of about 70 KB",
                    floor=floors.latency_floor(), ratio=floors.latency_ratio(times)))
    return rows


def cost(stack: BenchStack, duration: float, log: Log) -> list[Row]:
    """Callbacks with 10 log lines against callbacks with none."""
    results = loads.compare(stack, duration, {"no lines": {}, "10 lines": {"lines": 10}}, log,
                            rounds=COST_ROUNDS)
    plain, logged = results["no lines"], results["10 lines"]
    ratio = plain["cpu_us"] / logged["cpu_us"] if logged["cpu_us"] else 0.0
    ok = loads.all_answered(plain, "204") and loads.all_answered(logged, "204")
    return [Row("7", "callbacks carrying 10 log lines each, against callbacks with none",
                f"{1e6 / logged['cpu_us']:.0f}/s per core ({logged['cpu_us']:.0f} µs CPU "
                f"per request) against {1e6 / plain['cpu_us']:.0f}/s"
                + ("" if ok else f"; ERRORS {plain['statuses']} {logged['statuses']}"),
                f"≥ {LINES_TARGET}× without lines", ratio >= LINES_TARGET and ok,
                why="ten XADDs in the update's script and a bigger push per callback",
                floor=f"without lines {1e6 / plain['cpu_us']:.0f}/s per core",
                ratio=f"{ratio:.2f}×")]


NOTE = (
    "Job logs (7): `bench/measure_log.py`. The fast log is sent by the bench process on an "
    "open-loop schedule (10 lines every 10 ms, each line stamped with its callback's send "
    "time); a python-socketio client in its own process (`bench/logwatch.py`) follows it "
    "with `lastLogId=0-0` and checks every line came, in order and once "
    "(`shared.joblog.LogFollower`). The late joiner connects 20 times after the stream, "
    "when the newest 1,000 lines are stored. The cost row is closed loop like (2), with "
    f"100 clients watching the jobs; the two kinds take turns, {COST_ROUNDS} turns of each, "
    "each kind's turns added up (before 2026-12-05 one run of each, one after the other, "
    "which let the machine's drift between the two runs move the ratio by about ±0.08).")
