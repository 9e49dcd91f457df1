"""A highlight job for the benchmark, shaped like the site's own.

It reports ``running`` through the worker's reporter, highlights the source
with Pygments (``HtmlFormatter``, CSS classes) and reports ``succeeded``; the
HTML is the job's RQ result. The benchmark compares its throughput in a
worker process with calling :func:`highlight_html` directly. The lexers the
benchmark uses are loaded at import, so a worker preloading this module does
not import them again in every forked work horse.
"""

from __future__ import annotations

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name

from shared.config import Config
from worker.reporting import job_boundary, make_reporter

WARM_LEXERS = ("python",)
for _name in WARM_LEXERS:
    get_lexer_by_name(_name)


def highlight_html(source: str, language: str) -> str:
    """Pygments' HTML for ``source`` (what the job does, without the job)."""
    return highlight(source, get_lexer_by_name(language), HtmlFormatter(cssclass="highlight"))


def highlight_job(job_id: str, token: str | None = None, source: str = "",
                  language: str = "python") -> str:
    """RQ entry point: report, highlight, report; returns the HTML."""
    reporter = make_reporter(Config(), token)
    with job_boundary(job_id, reporter):
        reporter.report(job_id, 10, message="highlighting")
        html = highlight_html(source, language)
    return html
