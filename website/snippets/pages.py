"""Pages of the code-snippet highlighter, its polling endpoint and its style sheet.

``GET /snippets`` shows the form and the recent snippets, ``POST /snippets``
stores one and enqueues its highlight job (303 to its page). The page shows
the escaped source until the worker's result arrives over Socket.IO or from
``GET /snippets/<id>/highlighted`` (204 while pending, 200 with the HTML).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, url_for
from pygments.formatters import HtmlFormatter
from werkzeug.exceptions import RequestEntityTooLarge

from shared.capacity import StorageFull
from shared.errors import Invalid, NotFound, TooLarge
from shared.kinds.highlight.snippets import (
    AUTO_DETECT,
    CSS_CLASS,
    HIGHLIGHT_KIND,
    HIGHLIGHTED,
    PAGE_SIZE,
    RECENT_MAX,
    SOURCE_MAX_BYTES,
    Snippet,
    is_known_language,
    language_choices,
)
from shared.protocol import QUEUED, RUNNING, is_uuid, iso_time, new_id
from shared.quotas import Usage
from shared.store import JobState
from website.auth.owners import remember_job, request_address, request_owner, request_tenant
from website.extensions import core
from website.http.answers import error_response

bp = Blueprint("snippets", __name__)

LIGHT_STYLE = "default"
DARK_STYLE = "github-dark"
MAX_PAGE = RECENT_MAX // PAGE_SIZE + 1
LANGUAGE_ECHO_MAX = 40


def too_large_message(size: int | None) -> str:
    """The 413 message, with the submitted size when known."""
    limit = f"a snippet can be at most {SOURCE_MAX_BYTES // 1024} KB"
    if size is None:
        return f"The source is too large: {limit}."
    return f"The source is {size / 1024:.1f} KB: {limit}."


def validate_submission(source: object, language: object) -> tuple[str, str]:
    """Check a submitted source and language; the normalised pair.

    Raises :class:`~shared.errors.TooLarge` over 100 KB (UTF-8), 400 when empty, not text,
    or the language is not ``auto`` or a Pygments lexer alias.
    """
    if not isinstance(source, str):
        raise Invalid("The source must be text.")
    source = source.replace("\r\n", "\n")
    size = len(source.encode("utf-8", errors="surrogatepass"))
    if size > SOURCE_MAX_BYTES:
        raise TooLarge(too_large_message(size))
    if not source.strip():
        raise Invalid("The source is empty: paste some code to highlight.")
    if language is None or language == "":
        language = AUTO_DETECT
    if not isinstance(language, str):
        raise Invalid("The language must be a name such as 'python', or 'auto'.")
    language = language.strip().lower()
    if not is_known_language(language):
        shown = language[:LANGUAGE_ECHO_MAX]
        raise Invalid(f"Unknown language {shown!r}: choose one from the list, "
                            "or 'auto' to detect it.")
    return source, language


def snippet_state(snippet: Snippet, job: JobState | None) -> str:
    """``highlighted``, else the highlight job's state (``expired`` if it is gone)."""
    if snippet.highlighted:
        return HIGHLIGHTED
    return job.state if job is not None else "expired"


def find_snippet(snippet_id: str, source: bool = True) -> Snippet:
    """The stored snippet for a URL's id; :class:`NotFound` for a malformed or unknown id."""
    snippet = core.snippets.get(snippet_id.lower(), source=source) if is_uuid(snippet_id) else None
    if snippet is None:
        raise NotFound("There is no snippet with this id (it may have expired).")
    return snippet


def start_highlight(source: str, language: str) -> tuple[Snippet, JobState]:
    """Store a (validated) snippet, then start its highlight job; 503 when the store
    holds as many snippets (or jobs) as it may, 429 when the caller's quota is reached
    (the snippet, its source and its job; its HTML counts when it is stored)."""
    cfg = core.config
    if core.snippets.stored() >= cfg.MAX_STORED_SNIPPETS:
        raise StorageFull(f"The site stores as many snippets as it may "
                          f"({cfg.MAX_STORED_SNIPPETS}); try again later, when older ones "
                          "have expired.")
    core.lifecycle.capacity.ensure_room()
    tenant, address = request_tenant(), request_address()
    quotas = core.lifecycle.quotas
    payers = quotas.payers(tenant, address)
    quotas.take(payers, Usage(jobs=1, snippets=1, snippet_bytes=len(source.encode(
        "utf-8", errors="surrogatepass"))))
    job_id = new_id()
    snippet = core.snippets.create(source, language, job_id,
                                   tenants=[payer.tenant for payer in payers])
    page = url_for("snippets.show", snippet_id=snippet.snippet_id)
    state = core.lifecycle.start(HIGHLIGHT_KIND, {"snippet": snippet.snippet_id}, job_id=job_id,
                                 owner=request_owner(), room=False, tenant=tenant,
                                 address=address, quota=False,
                                 fields={"page": page, "page_text": "snippet"})
    return snippet, state


def _index(status: int = 200, error: str = "", source: str = "",
           language: str = AUTO_DETECT) -> tuple[str, int] | tuple[Response | str, int]:
    raw_page = request.args.get("page", "1")
    try:
        page = int(raw_page)
    except ValueError:
        page = 0
    if not 1 <= page <= MAX_PAGE:
        return error_response(400, f"page must be a whole number from 1 to {MAX_PAGE}.")
    recent, more = core.snippets.recent(page)
    states = core.snippets.job_states(recent)
    rows = [{"snippet": s, "state": states.get(s.snippet_id, ""), "created": iso_time(s.created_at)}
            for s in recent]
    html = render_template(
        "snippets.html", rows=rows, page=page, more=more, error=error, source=source,
        language=language, languages=language_choices(), max_kb=SOURCE_MAX_BYTES // 1024)
    return html, status


@bp.get("/snippets")
def index() -> tuple[str, int] | tuple[Response | str, int]:
    """The form and one page of recent snippets (``?page=N``)."""
    return _index()


@bp.post("/snippets")
def create() -> Response | tuple[str, int] | tuple[Response | str, int]:
    """Store a snippet, enqueue its highlight, and 303 to its page."""
    source, language = request.form.get("source"), request.form.get("language")
    try:
        source, language = validate_submission(source, language)
    except Invalid as exc:
        too_large = isinstance(exc, TooLarge)
        keep = source if isinstance(source, str) and not too_large else ""
        return _index(413 if too_large else 400, exc.message, keep, str(language or AUTO_DETECT))
    snippet, job = start_highlight(source, language)
    remember_job(job.job_id)
    target = url_for("snippets.show", snippet_id=snippet.snippet_id)
    return redirect(target, code=303)  # type: ignore[return-value]


@bp.errorhandler(RequestEntityTooLarge)
def body_too_large(exc: RequestEntityTooLarge) -> tuple[str, int] | tuple[Response | str, int]:
    """A body over the site's request limit (found wherever it is read): the form, with 413."""
    return _index(413, too_large_message(request.content_length))


@bp.get("/snippets/pygments.css")
def pygments_css() -> Response:
    """Pygments' style sheet for the highlighted HTML (light and dark schemes)."""
    response = Response(pygments_stylesheet(), mimetype="text/css")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


@bp.get("/snippets/<snippet_id>")
def show(snippet_id: str) -> str:
    """One snippet: highlighted if done, else its escaped source and live updates."""
    snippet = find_snippet(snippet_id)
    job = None if snippet.highlighted else core.store.get(snippet.job_id)
    state = snippet_state(snippet, job)
    return render_template(
        "snippet.html", snippet=snippet, state=state, job=job,
        waiting=state in (QUEUED, RUNNING), created=iso_time(snippet.created_at),
        highlighted_at=iso_time(snippet.highlighted_at) if snippet.highlighted else "")


@bp.get("/snippets/<snippet_id>/highlighted")
def highlighted(snippet_id: str) -> Response:
    """Polling: 200 with the HTML fragment (lexer name in ``X-Lexer``) when done,
    204 until then, 404 if unknown.

    A 204 carries the job's state in ``X-Job-State`` (``failed`` means it never
    will be highlighted: stop polling).
    """
    snippet = find_snippet(snippet_id, source=False)
    if snippet.highlighted:
        response = Response(snippet.highlighted_html, mimetype="text/html")
        response.headers["X-Highlighted-At"] = iso_time(snippet.highlighted_at)
        response.headers["X-Lexer"] = snippet.lexer
    else:
        response = Response(status=204)
        job = core.store.get(snippet.job_id)
        response.headers["X-Job-State"] = snippet_state(snippet, job)
    response.headers["Cache-Control"] = "no-store"
    return response


@lru_cache(maxsize=1)
def pygments_stylesheet() -> str:
    """CSS for ``.highlight``: Pygments' light style, and a dark one for dark schemes."""
    light = HtmlFormatter(style=LIGHT_STYLE).get_style_defs(f".{CSS_CLASS}")
    dark = HtmlFormatter(style=DARK_STYLE).get_style_defs(f".{CSS_CLASS}")
    return f"{light}\n@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n"


def public_job(job: JobState | None) -> dict[str, Any] | None:
    """A highlight job's state without its id (snippets are public; job ids are not)."""
    if job is None:
        return None
    return {k: v for k, v in job.to_payload().items() if k != "jobId"}


def snippet_json(snippet: Snippet, job: JobState | None,
                 with_source: bool = False) -> dict[str, Any]:
    """A snippet as the JSON API shows it."""
    body: dict[str, Any] = {
        "id": snippet.snippet_id,
        "language": snippet.language,
        "lexer": snippet.lexer or None,
        "title": snippet.title,
        "createdAt": iso_time(snippet.created_at),
        "state": snippet_state(snippet, job),
        "highlighted": snippet.highlighted,
        "highlightedAt": iso_time(snippet.highlighted_at) if snippet.highlighted else None,
        "html": snippet.highlighted_html if snippet.highlighted else None,
        "job": public_job(job),
        "url": url_for("snippets.show", snippet_id=snippet.snippet_id),
        "highlightedUrl": url_for("snippets.highlighted", snippet_id=snippet.snippet_id),
        "statusUrl": url_for("snippets_api.get_snippet", snippet_id=snippet.snippet_id),
    }
    if with_source:
        body["source"] = snippet.source
    return body
