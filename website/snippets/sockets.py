"""``subscribe`` to a snippet: join its room first, then send where it stands."""

from __future__ import annotations

from typing import Any

from shared.kinds.highlight.snippets import HIGHLIGHT, progress_payload, snippet_room
from shared.protocol import UPDATE_PROGRESS, is_uuid
from website.extensions import core
from website.realtime.limits import joined


def join_snippet(snippet_id: object) -> list[tuple[str, dict[str, Any]]]:
    """Join the snippet's room, then return the events that bring it up to date: the
    ``highlight`` result when it is stored, else its job's state (without the job's id).

    The room is left again when the snippet is unknown or Redis fails.
    """
    if not is_uuid(snippet_id):
        raise ValueError("snippetId must be a UUID")
    assert isinstance(snippet_id, str)
    snippet_id = snippet_id.lower()
    with joined(snippet_room(snippet_id)):
        snippet = core.snippets.get(snippet_id, source=False)
        if snippet is None:
            raise LookupError(f"unknown snippet {snippet_id}")
        if snippet.highlighted:
            return [(HIGHLIGHT, snippet.highlight_payload())]
        state = core.store.get(snippet.job_id)
    return [(UPDATE_PROGRESS, progress_payload(state, snippet_id))] if state else []
