"""Job functions the tests enqueue by dotted name into the real worker.

The worker runs with the repository root on ``PYTHONPATH``, so it imports
these like any job module. They use the production job code and only change
what a test needs: a highlighter that outlasts the job timeout, or a job that
keeps the (single) worker busy until the test releases it.
"""

from __future__ import annotations

import signal

import redis

from shared.config import WORKER, Config
from shared.kinds.highlight import run_highlight, snippet_store
from worker.boundary import job_boundary, make_reporter
from worker.context import JobContext

SLOW_HIGHLIGHT_JOB = "tests.highlight_jobs.slow_highlight_job"
BLOCKER_JOB = "tests.highlight_jobs.block_until_released"


def _sleepy_highlighter(source: str, language: str) -> tuple[str, str]:
    """Never finishes: waits for the signal of RQ's job timeout (SIGALRM), whose
    handler raises out of here."""
    while True:
        signal.pause()


def slow_highlight_job(job_id: str, snippet: str, token: str | None = None) -> None:
    """The highlight kind's job as the worker runs it (``worker.runner.run_kind``), with a
    highlighter slower than any test's job timeout."""
    cfg = Config(role=WORKER)
    reporter = make_reporter(cfg, token)
    ctx = JobContext(job_id, reporter, cfg)
    try:
        with job_boundary(job_id, reporter, ctx.finish):
            run_highlight(snippet, snippet_store(cfg.REDIS_URL, cfg.SNIPPET_TTL,
                                                 cfg.SNIPPET_HTML_MAX),
                          ctx.progress, _sleepy_highlighter, cfg.SNIPPET_HTML_MAX)
    finally:
        ctx.finish(False)


def block_until_released(release_key: str, timeout: float = 60.0) -> bool:
    """Occupy the worker until the test pushes to ``release_key`` (or ``timeout``)."""
    client = redis.Redis.from_url(Config().REDIS_URL)
    try:
        return client.blpop([release_key], timeout=timeout) is not None
    finally:
        client.close()
