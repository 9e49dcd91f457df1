"""What to push when a job changes: the Socket.IO events of one change, decided once.

A :class:`Change` is a job's state as it was stored by one change (a report,
a claim, a cancel, a retry, a lapsed lease, a new job). :func:`change_events`
turns it into ``(event, payload, room)`` triples: the lines the change
appended (``jobLog``, first, so a page that sees the final state already has
the last lines), ``updateProgress`` to the job's room, whatever the job's kind
adds (``JobKind.events``), and the dashboard's compact ``jobChanged``. They are
emitted by ``shared/push.py``, the one module that emits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.protocol import DASHBOARD_ROOM, DASHBOARD_UPDATE, UPDATE_PROGRESS, room_for
from shared.store import JobState

Event = tuple[str, dict[str, Any], str]  # (event name, payload, room)
KindEvents = Callable[[JobState, Any], list[Event]]  # a kind's own events: (state, redis client)


@dataclass(frozen=True)
class Change:
    """A job's state as one change stored it, at ``at`` (epoch seconds); ``created``
    for a job just stored."""

    state: JobState
    at: float
    created: bool = False


def change_events(change: Change, kind_events: list[Event] | None = None) -> list[Event]:
    """The events of one change (``kind_events``: what the job's kind adds to it)."""
    state = change.state
    if change.created:  # nobody watches a job's room before it exists: the dashboard only
        return [(DASHBOARD_UPDATE, state.to_dashboard(change.at, created=True), DASHBOARD_ROOM)]
    return [
        *([state.log.event()] if state.log is not None else []),
        (UPDATE_PROGRESS, state.to_payload(), room_for(state.job_id)),
        *(kind_events or []),
        (DASHBOARD_UPDATE, state.to_dashboard(change.at), DASHBOARD_ROOM),
    ]
