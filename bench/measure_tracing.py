"""Traces (16): what they cost a progress callback, off and on (``shared/tracing.py``).

Three web processes take the same closed-loop callback load in turn, in rounds:
*today*, the site as it was before traces (commit :data:`BASE_COMMIT`, extracted with
``git archive`` and run by the same virtualenv), *off*, today's code with
``OTEL_EXPORTER_OTLP_ENDPOINT`` unset, and *on*, with it set to a receiver in this
process that takes the exports and discards them. The figure is the gunicorn worker's
CPU per callback (as in section 2). The worker's side, a ``ProgressReporter``'s CPU
per report (its HTTP client span with tracing on, the batch processor's export
included), runs in a child process (``python -m bench.measure_tracing reporter``) so
the instrumentation never patches the bench process.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.report import Row
from bench.stack import ROOT_DIR, WEB_APP, BenchStack, Web, measured_load, settle
from tests.support import TEST_PROGRESS_TOKEN, Process, free_port, wait_until

Log = Callable[[str], None]
BASE_COMMIT = "ad42938"  # the last commit before traces (#30): "today's" code path
TARGET = 1.10  # tracing off: at most 10% above today's CPU per callback (noise included)
CONCURRENCY = 32
REPORTS = 2000
NOTE = (
    "Traces (16): three web processes (eventlet) take the same closed-loop callback load "
    f"({CONCURRENCY} keep-alive connections, jobs nobody watches) in turn, in rounds: "
    f"*today*, the site before traces (commit `{BASE_COMMIT}`, extracted with `git "
    "archive`, same virtualenv, same Redis), *off*, this code with "
    "`OTEL_EXPORTER_OTLP_ENDPOINT` unset, and *on*, with it set to an OTLP/HTTP receiver "
    "in the bench process that discards what it gets (the batch processor's export "
    "included). Each figure is the gunicorn worker's CPU over its runs divided by their "
    "callbacks, the median of the rounds; the ratio of off to today is the target (1.0 "
    "within noise: with the variable unset, no tracing code runs in the callback). The "
    "worker's side is a `ProgressReporter` in a child process reporting "
    f"{REPORTS} times to web *a*, its CPU per report; with tracing on each report is a "
    "client span in a run span, exported to the same receiver.")


class _Discard(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that reads each export and answers 200."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        """Take the export and drop it."""
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - its signature
        """Quiet."""


def start_today(stack: BenchStack, log: Log) -> Web | None:
    """The site at :data:`BASE_COMMIT` under gunicorn, on the bench's Redis; None (and a
    log line) when the commit cannot be extracted."""
    tree = stack.dir / f"today-{BASE_COMMIT}"
    try:
        archive = subprocess.run(["git", "archive", "--format=tar", BASE_COMMIT],
                                 cwd=ROOT_DIR, capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        log(f"  16: no 'today' web process: git archive {BASE_COMMIT} failed ({exc})")
        return None
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    port = free_port()
    env = dict(stack.a.env, PORT=str(port), WEB_BIND=f"127.0.0.1:{port}",
               SITE_URL=f"http://127.0.0.1:{port}", PYTHONPATH=str(tree))
    proc = Process("web-today", [str(Path(sys.executable).parent / "gunicorn"), WEB_APP], env,
                   stack.log_dir, cwd=tree).start()
    web = Web("web-today", env, proc)
    try:
        wait_until(lambda: _answers(web), timeout=30, what="the 'today' web process")
    except (TimeoutError, RuntimeError) as exc:
        proc.stop()
        log(f"  16: no 'today' web process: {exc}")
        return None
    return web


def _answers(web: Web) -> bool:
    if not web.proc.alive():
        raise RuntimeError(f"{web.name} exited:\n{web.proc.log_tail()}")
    import requests

    return requests.get(web.url + "/", timeout=1).status_code == 200


def reporter_cpu(port: int, job_id: str, count: int, endpoint: str = "") -> float:
    """CPU µs per report of a ``ProgressReporter`` in a child process (traced with
    ``endpoint``)."""
    cmd = [sys.executable, "-m", "bench.measure_tracing", "reporter", "--port", str(port),
           "--job", job_id, "--count", str(count), "--endpoint", endpoint]
    out = subprocess.run(cmd, cwd=ROOT_DIR, capture_output=True, text=True, check=True,
                         timeout=300)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["cpu_us"])


def callback_cpu(stack: BenchStack, seconds: float, rounds: int, log: Log) -> list[Row]:
    """Section 16's rows: the web process's CPU per callback today, off and on, and the
    reporter's CPU per report off and on."""
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Discard)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    webs: dict[str, Web | None] = {}
    try:
        webs["today"] = start_today(stack, log)
        webs["off"] = stack.start_web("web-trace-off")
        webs["on"] = stack.start_web("web-trace-on", OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
                                     OTEL_BSP_SCHEDULE_DELAY="1000")
        jobs = stack.create_jobs(200)
        cpu: dict[str, list[float]] = {name: [] for name, web in webs.items() if web}
        for turn in range(rounds):
            for name, web in webs.items():
                if web is None:
                    continue
                result = measured_load(web, "/api/progress", seconds, CONCURRENCY, jobs=jobs,
                                       tag=f"trace {name} {turn}")
                if result["statuses"].get("204", 0) != result["requests"]:
                    log(f"  16: {name}: unexpected answers {result['statuses']}")
                cpu[name].append(result["cpu_us"])
                log(f"  16 round {turn} {name}: {result['cpu_us']:.0f} µs CPU/callback, "
                    f"{result['rate']:.0f}/s")
                settle(0.5)
        report = {"off": reporter_cpu(stack.a.port, jobs[0], REPORTS),
                  "on": reporter_cpu(stack.a.port, jobs[1], REPORTS, endpoint)}
        log(f"  16 reporter: {report}")
    finally:  # the sections after this one run beside the stack's own webs only
        for web in webs.values():
            if web is not None:
                web.proc.stop()
                if web in stack.webs:
                    stack.webs.remove(web)
        receiver.shutdown()
    med = {name: statistics.median(values) for name, values in cpu.items()}
    rows = []
    if "today" in med:
        ratio = med["off"] / med["today"]
        rows.append(Row(
            "16", "callback CPU in the web process, tracing off (variable unset)",
            f"{med['off']:.0f} µs per callback (rounds: "
            f"{', '.join(f'{v:.0f}' for v in cpu['off'])})", f"≤ {TARGET:.2f}× today's",
            ratio <= TARGET, floor=f"today's code ({BASE_COMMIT}): {med['today']:.0f} µs "
            f"(rounds: {', '.join(f'{v:.0f}' for v in cpu['today'])})",
            ratio=f"{ratio:.2f}×", why="noise between runs of one measurement on the shared "
            "machine: with the variable unset no tracing code runs in the callback"))
    base = med.get("today", med["off"])
    rows.append(Row(
        "16", "callback CPU in the web process, tracing on (exported; for information)",
        f"{med['on']:.0f} µs per callback (rounds: "
        f"{', '.join(f'{v:.0f}' for v in cpu['on'])})",
        floor=f"{'today' if 'today' in med else 'off'}: {base:.0f} µs",
        ratio=f"{med['on'] / base:.2f}×"))
    rows.append(Row(
        "16", "a report's CPU in the worker (ProgressReporter), tracing on (for information)",
        f"{report['on']:.0f} µs per report", floor=f"tracing off: {report['off']:.0f} µs",
        ratio=f"{report['on'] / report['off']:.2f}×"))
    return rows


def _reporter_main(args: argparse.Namespace) -> None:
    """The child process: report ``count`` times, print the CPU µs per report."""
    import requests

    from shared import tracing
    from shared.callback import ProgressReporter

    url = f"http://127.0.0.1:{args.port}/api/progress"
    reporter = ProgressReporter(url, TEST_PROGRESS_TOKEN, session=requests.Session())
    span: Any = None
    if args.endpoint:
        tracing.setup(SimpleNamespace(OTEL_EXPORTER_OTLP_ENDPOINT=args.endpoint,
                                      OTEL_SERVICE_NAME="bench-reporter"), "bench-reporter")
        span = tracing.provider().get_tracer("bench").start_as_current_span("jobcast.run")
        span.__enter__()
    for i in range(50):  # warm up: connection, code paths
        reporter.report(args.job, i % 100, message=f"warm {i}")
    start = time.process_time()
    for i in range(args.count):
        reporter.report(args.job, i % 100, message=f"report {i}")
    if span is not None:
        span.__exit__(None, None, None)
        tracing.flush()
    cpu = time.process_time() - start
    sys.stdout.write(json.dumps({"cpu_us": 1e6 * cpu / args.count}) + "\n")


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.measure_tracing reporter --port P --job ID [--endpoint URL]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.measure_tracing")
    parser.add_argument("what", choices=["reporter"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--count", type=int, default=REPORTS)
    parser.add_argument("--endpoint", default="")
    _reporter_main(parser.parse_args(argv))


if __name__ == "__main__":
    main()
