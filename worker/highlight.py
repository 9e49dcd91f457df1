"""The highlight job: Pygments turns a stored snippet into HTML.

``highlight(source, language)`` is the plain, unit-testable part;
``highlight_job`` is the thin RQ entry point (enqueued by dotted name as
``shared.protocol.HIGHLIGHT_JOB``). The job stores the HTML on the snippet's
hash first and only then reports ``succeeded``, so the callback that pushes
the ``highlight`` event always finds the result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pygments
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from shared.config import WORKER, Config
from shared.protocol import RUNNING
from shared.snippets import AUTO_DETECT, CSS_CLASS, HTML_MAX_BYTES, SnippetStore, check_html_size
from worker.language import detect_lexer
from worker.reporting import job_boundary, make_reporter, snippet_store

log = logging.getLogger(__name__)

Report = Callable[..., object]
Highlighter = Callable[[str, str], tuple[str, str]]


class SnippetGone(LookupError):
    """The snippet expired (or never existed) before it could be highlighted."""


def pick_lexer(source: str, language: str) -> Lexer:
    """The lexer for ``language`` (a Pygments alias), or the detected one for ``auto``.

    Raises :class:`ValueError` for an unknown language name.
    """
    if not language or language.lower() == AUTO_DETECT:
        return detect_lexer(source)
    try:
        return get_lexer_by_name(language)
    except ClassNotFound as exc:
        raise ValueError(f"unknown language {language!r}") from exc


def render(source: str, language: str) -> tuple[str, str]:
    """Highlight ``source``: the HTML fragment and the name of the lexer used."""
    lexer = pick_lexer(source, language)
    formatter = HtmlFormatter(cssclass=CSS_CLASS, wrapcode=True)
    return pygments.highlight(source, lexer, formatter), str(lexer.name)


def highlight(source: str, language: str) -> str:
    """Highlight ``source`` as ``language`` (or ``auto``): an escaped HTML fragment."""
    return render(source, language)[0]


def run_highlight(job_id: str, snippet_id: str, snippets: SnippetStore, report: Report,
                  highlighter: Highlighter = render, html_max: int = HTML_MAX_BYTES) -> str:
    """Highlight one stored snippet and store the result; the lexer name.

    Raises :class:`SnippetGone` when the snippet does not exist (any more),
    :class:`shared.snippets.HtmlTooLarge` when its HTML is over ``html_max``
    bytes (nothing is stored; the job fails with that message).
    """
    report(job_id, 10, RUNNING, "highlighting")
    snippet = snippets.get(snippet_id)
    if snippet is None:
        raise SnippetGone(f"snippet {snippet_id} is unknown or expired")
    html, lexer = highlighter(snippet.source, snippet.language)
    check_html_size(html, html_max)
    if not snippets.set_highlighted(snippet_id, html, lexer):
        raise SnippetGone(f"snippet {snippet_id} expired while it was highlighted")
    return lexer


def run_highlight_job(job_id: str, snippet_id: str, token: str | None = None,
                      highlighter: Highlighter = render) -> str:
    """The body of :func:`highlight_job`, with the highlighter as a parameter."""
    cfg = Config(role=WORKER)
    reporter = make_reporter(cfg, token)
    with job_boundary(job_id, reporter):
        lexer = run_highlight(job_id, snippet_id, snippet_store(cfg.REDIS_URL, cfg.SNIPPET_TTL),
                              reporter.report, highlighter, cfg.SNIPPET_HTML_MAX)
    log.info("job %s highlighted snippet %s as %s", job_id, snippet_id, lexer)
    return lexer


def highlight_job(job_id: str, snippet_id: str, token: str | None = None) -> str:
    """RQ entry point (``worker.highlight.highlight_job``); returns the lexer name."""
    return run_highlight_job(job_id, snippet_id, token)
