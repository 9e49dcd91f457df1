"""Creating snippets: store the source, then start its highlight job (a hidden kind)."""

from __future__ import annotations

from flask import url_for

from shared.capacity import StorageFull
from shared.kinds.highlight.snippets import HIGHLIGHT_KIND, Snippet
from shared.protocol import new_id
from shared.store import JobState
from website.auth.owners import request_owner
from website.extensions import core


def start_highlight(source: str, language: str) -> tuple[Snippet, JobState]:
    """Store a (validated) snippet, then start its highlight job; 503 when the store
    holds as many snippets (or jobs) as it may."""
    cfg = core.config
    if core.snippets.stored() >= cfg.MAX_STORED_SNIPPETS:
        raise StorageFull(f"The site stores as many snippets as it may "
                          f"({cfg.MAX_STORED_SNIPPETS}); try again later, when older ones "
                          "have expired.")
    core.lifecycle.capacity.ensure_room()
    job_id = new_id()
    snippet = core.snippets.create(source, language, job_id)
    page = url_for("snippets.show", snippet_id=snippet.snippet_id)
    state = core.lifecycle.start(HIGHLIGHT_KIND, {"snippet": snippet.snippet_id}, job_id=job_id,
                                 owner=request_owner(), room=False,
                                 fields={"page": page, "page_text": "snippet"})
    return snippet, state
