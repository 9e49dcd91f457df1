"""Creating snippets: store the source, then enqueue its highlight job."""

from __future__ import annotations

from shared.protocol import HIGHLIGHT_JOB, HIGHLIGHT_KIND, new_id
from shared.snippets import Snippet
from shared.store import JobState
from website.extensions import redis_ext
from website.http.storage import ensure_room
from website.jobs.services import enqueue_job


def start_highlight(source: str, language: str) -> tuple[Snippet, JobState]:
    """Store a (validated) snippet, then enqueue its highlight job (503 when
    the store is full)."""
    ensure_room(snippet=True)
    job_id = new_id()
    snippet = redis_ext.snippets.create(source, language, job_id)
    state = enqueue_job(HIGHLIGHT_JOB, kind=HIGHLIGHT_KIND, job_id=job_id,
                        snippet_id=snippet.snippet_id)
    return snippet, state
