"""Report a job's progress from a shell script or an external worker.

    python -m worker.report JOB_ID 40 --message "resizing" [--state running]
        [--stage resize] [--url URL] [--token TOKEN] [--retry-seconds 30]

It sends one update to the site's progress callback with the same client as
the worker (:class:`shared.reporter.ProgressReporter`: retries with backoff
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
import logging
import os
import sys
from collections.abc import Mapping

from shared.protocol import REPORTABLE_STATES, RUNNING, is_uuid
from shared.reporter import ProgressReporter, ReportError

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
    parser.add_argument("progress", type=_progress, help="percent done, 0 to 100")
    parser.add_argument("--message", "-m", default="", help="a short status text")
    parser.add_argument("--state", default=RUNNING, choices=REPORTABLE_STATES,
                        help="the job's state (default: running)")
    parser.add_argument("--stage", default="", help="the stage the job is in")
    parser.add_argument("--url", help="the progress callback URL")
    parser.add_argument("--token", help="bearer token (prefer JOBCAST_JOB_TOKEN)")
    parser.add_argument("--retry-seconds", type=float, default=None,
                        help="how long to keep retrying (default: REPORT_RETRY_SECONDS or 30)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    return parser


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
            retry = float(env.get("REPORT_RETRY_SECONDS") or 30)
        except ValueError:
            retry = 30.0
    reporter = ProgressReporter(resolve_url(args.url, env), token, retry_seconds=retry)
    try:
        reporter.report(args.job_id, args.progress, args.state, args.message, args.stage)
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
