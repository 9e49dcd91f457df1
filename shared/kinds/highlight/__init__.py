"""The code-snippet highlighter, a declared kind: Pygments turns a stored snippet into HTML.

A snippet is stored first (``snippets.py``: its source, language and, once
done, its HTML), then a job of the hidden ``highlight`` kind is started for it
(``website/snippets``). The job reads the snippet, highlights it
(:func:`render`: Pygments, the language detected for ``auto``, ``language.py``),
stores the HTML on the snippet's hash first and only then ends, so the push of
its end always finds the result. Each change of the job is also pushed to the
snippet's room (:func:`~shared.kinds.highlight.snippets.snippet_events`, the
kind's ``events``), with the snippet's id instead of the job's: a public
snippet never shows its job's id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import pygments
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from shared import redisconn
from shared.errors import NotFound
from shared.kinds import Context, job_kind
from shared.kinds.highlight.language import detect_lexer
from shared.kinds.highlight.snippets import (
    AUTO_DETECT,
    CSS_CLASS,
    HIGHLIGHT_KIND,
    HTML_MAX_BYTES,
    SnippetStore,
    check_html_size,
    snippet_events,
)

log = logging.getLogger(__name__)

Progress = Callable[..., object]
Highlighter = Callable[[str, str], tuple[str, str]]


class SnippetGone(NotFound):
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


def run_highlight(snippet_id: str, snippets: SnippetStore, progress: Progress,
                  highlighter: Highlighter = render, html_max: int = HTML_MAX_BYTES) -> str:
    """Highlight one stored snippet and store the result; the lexer name.

    Raises :class:`SnippetGone` when the snippet does not exist (any more),
    :class:`~shared.kinds.highlight.snippets.HtmlTooLarge` when its HTML is over
    ``html_max`` bytes (nothing is stored; the job fails with that message).
    """
    progress(10, message="highlighting")
    snippet = snippets.get(snippet_id)
    if snippet is None:
        raise SnippetGone(f"snippet {snippet_id} is unknown or expired")
    html, lexer = highlighter(snippet.source, snippet.language)
    check_html_size(html, html_max)
    if not snippets.set_highlighted(snippet_id, html, lexer):
        raise SnippetGone(f"snippet {snippet_id} expired while it was highlighted")
    return lexer


@lru_cache(maxsize=4)
def snippet_store(redis_url: str, ttl: int, html_max: int) -> SnippetStore:
    """The snippet store on ``redis_url`` (one per process)."""
    return SnippetStore(redisconn.connect(redis_url, decode_responses=True), ttl=ttl,
                        html_max=html_max)


@job_kind(HIGHLIGHT_KIND, title="Highlight a snippet", hidden=True, events=snippet_events,
          description="Highlights a stored code snippet with Pygments.",
          args={"type": "object", "additionalProperties": False, "required": ["snippet"],
                "properties": {"snippet": {"type": "string", "maxLength": 64}}})
def highlight_snippet(ctx: Context, snippet: str) -> None:
    """Highlight the snippet ``snippet`` (its id) and store the HTML with it."""
    cfg: Any = ctx.config
    store = snippet_store(cfg.REDIS_URL, cfg.SNIPPET_TTL, cfg.SNIPPET_HTML_MAX)
    lexer = run_highlight(snippet, store, ctx.progress, render, cfg.SNIPPET_HTML_MAX)
    log.info("job %s highlighted snippet %s as %s", ctx.job_id, snippet, lexer)
