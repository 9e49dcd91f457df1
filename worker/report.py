"""Report a job's progress from a shell script or an external worker.

    python -m worker.report JOB_ID 40 --message "resizing" [--state running]
        [--stage resize] [--url URL] [--token TOKEN] [--retry-seconds 30]
    python -m worker.report JOB_ID --current 3 --total 10 --log "file 3 done"
    some-command | python -m worker.report JOB_ID --log-stdin
    python -m worker.report JOB_ID --state succeeded --result '{"files": 10}'

``--log`` (repeatable) sends log lines with the update; ``--log-stdin`` reads
lines from standard input until it ends and sends them in batches: at once
when 100 are waiting, else about 100 ms after the first of a batch, so a
command printing 1,000 lines a second makes about ten callbacks a second.

It sends one update to the site's progress callback with the same client as
the worker (:class:`shared.callback.ProgressReporter`: retries with backoff
on connection errors, 429 and 5xx). The URL comes from ``--url``, else
``PROGRESS_URL``, else ``SITE_URL`` + ``/api/progress``; the token from
``--token``, else ``JOBCAST_JOB_TOKEN`` (the job's own token), else
``PROGRESS_TOKEN``. Prefer the environment for the token: a command line is
visible to every user of the machine.

Exit codes:
  0  the site took the update (applied, or already known)
  2  bad arguments
  3  the site refused the update (bad token, unknown job, invalid values)
  4  the site could not be reached in time (or kept answering 5xx/429)
  5  the job has already ended on the site (e.g. cancelled): stop working on it
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from shared.callback import ProgressReporter, ReportError
from shared.protocol import (
    LOG_BATCH_MAX,
    NO_RESULT,
    REPORTABLE_STATES,
    RUNNING,
    is_uuid,
    progress_of,
)

log = logging.getLogger("worker.report")

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNREACHABLE = 4
EXIT_ENDED = 5
DEFAULT_SITE_URL = "http://127.0.0.1:5000"


def _progress(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("progress must be from 0 to 100")
    return int(value)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("counts are 0 or more")
    return value


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None


def _job_id(text: str) -> str:
    if not is_uuid(text.lower()):
        raise argparse.ArgumentTypeError(f"not a job id (UUID): {text!r}")
    return text.lower()


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m worker.report", description="Report one progress update of a job.",
        epilog="exit codes: 0 taken, 2 bad arguments, 3 refused by the site, "
               "4 site unreachable, 5 the job has already ended (stop working)")
    parser.add_argument("job_id", type=_job_id, help="the job's id (a UUID)")
    parser.add_argument("progress", type=_progress, nargs="?", default=None,
                        help="percent done, 0 to 100 (or give --current and --total)")
    parser.add_argument("--current", type=_count, help="how many of --total are done")
    parser.add_argument("--total", type=_count, help="the total of \"n of total\"")
    parser.add_argument("--log", action="append", default=[], metavar="LINE",
                        help="a log line to send with the update (repeatable)")
    parser.add_argument("--log-stdin", action="store_true",
                        help="send standard input's lines as log lines, batched")
    parser.add_argument("--result", type=_json, default=NO_RESULT, metavar="JSON",
                        help="the job's result (JSON), with --state succeeded")
    parser.add_argument("--message", "-m", default="", help="a short status text")
    parser.add_argument("--state", default=RUNNING, choices=REPORTABLE_STATES,
                        help="the job's state (default: running)")
    parser.add_argument("--stage", default="", help="the stage the job is in")
    parser.add_argument("--url", help="the progress callback URL")
    parser.add_argument("--token", help="bearer token (prefer JOBCAST_JOB_TOKEN)")
    parser.add_argument("--retry-seconds", type=float, default=None,
                        help="how long to keep retrying (default: REPORT_RETRY_SECONDS or 10)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    return parser


def batches(stream: TextIO, size: int = LOG_BATCH_MAX,
            wait: float = 0.1) -> Iterator[list[str]]:
    """The lines of ``stream`` in batches: ``size`` lines, or what came within ``wait``."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line.rstrip("\r\n"))
        lines.put(None)

    threading.Thread(target=read, name="report-stdin", daemon=True).start()
    batch: list[str] = []
    deadline = 0.0
    while True:
        timeout = None if not batch else max(0.0, deadline - time.monotonic())
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            yield batch
            batch = []
            continue
        if line is None:
            if batch:
                yield batch
            return
        if not batch:
            deadline = time.monotonic() + wait
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []


def resolve_url(arg: str | None, env: Mapping[str, str]) -> str:
    """``--url``, else ``PROGRESS_URL``, else ``SITE_URL`` + ``/api/progress``."""
    if arg:
        return arg
    if env.get("PROGRESS_URL"):
        return env["PROGRESS_URL"]
    return (env.get("SITE_URL") or DEFAULT_SITE_URL).rstrip("/") + "/api/progress"


def resolve_token(arg: str | None, env: Mapping[str, str]) -> str:
    """``--token``, else ``JOBCAST_JOB_TOKEN``, else ``PROGRESS_TOKEN`` (may be empty)."""
    return arg or env.get("JOBCAST_JOB_TOKEN") or env.get("PROGRESS_TOKEN") or ""


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Send the update; the exit code (see the module docstring)."""
    env = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=(env.get("LOG_LEVEL") or "WARNING").upper(), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    token = resolve_token(args.token, env)
    if not token:
        log.error("no token: pass --token or set JOBCAST_JOB_TOKEN or PROGRESS_TOKEN")
        return EXIT_USAGE
    retry = args.retry_seconds
    if retry is None:
        try:
            retry = float(env.get("REPORT_RETRY_SECONDS") or 10)
        except ValueError:
            retry = 10.0
    if (args.current is None) != (args.total is None) or (
            args.total is not None and args.current > args.total):
        log.error("--current and --total go together, with current <= total")
        return EXIT_USAGE
    progress = args.progress if args.progress is not None else (
        progress_of(args.current, args.total) if args.total is not None else 0)
    reporter = ProgressReporter(resolve_url(args.url, env), token, retry_seconds=retry)
    fields: dict[str, Any] = {"current": args.current, "total": args.total}
    try:
        if args.log_stdin:
            for batch in batches(sys.stdin):
                reporter.report(args.job_id, progress, RUNNING, args.message, args.stage,
                                lines=batch, **fields)
                if reporter.job_ended:
                    break
        if not reporter.job_ended:
            reporter.report(args.job_id, progress, args.state, args.message, args.stage,
                            lines=args.log, result=args.result, **fields)
    except ReportError as exc:
        log.error("job %s: %s", args.job_id, exc)
        if exc.status is not None and exc.status < 500 and exc.status != 429:
            return EXIT_REFUSED
        return EXIT_UNREACHABLE
    if reporter.job_ended:
        log.warning("job %s has already ended on the site (%s)", args.job_id,
                    "retried: this token is for an earlier attempt" if reporter.superseded
                    else reporter.last_state)
        return EXIT_ENDED
    if not args.quiet:
        sys.stdout.write(f"job {args.job_id}: {'applied' if reporter.last_applied else 'known'}"
                         f", now {reporter.last_state or args.state}\n")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
