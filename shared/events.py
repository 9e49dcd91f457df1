"""What to push when a job's stored state changes, decided once.

The site's callback and job-control views and the worker's direct emitter
(``WORKER_EMIT=direct`` and the fallback) all send the same events for an
applied change, so they all call :func:`state_events`.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from shared import keys
from shared.protocol import DASHBOARD_ROOM, DASHBOARD_UPDATE, UPDATE_PROGRESS, room_for
from shared.snippets import Event, SnippetStore, snippet_events
from shared.store import JobState, JobStore


def state_events(state: JobState, snippets: SnippetStore, at: float) -> list[Event]:
    """``(event, payload, room)`` for a change to ``state`` made at time ``at``.

    ``jobLog`` with the lines the change appended (first, so a page that
    sees the final state already has the last lines), ``updateProgress`` to
    the job's room, a highlight job's snippet events
    (``highlight`` with the HTML once it succeeded, and the state), and the
    dashboard's compact ``jobChanged``.
    """
    return [
        *([state.log.event()] if state.log is not None else []),
        (UPDATE_PROGRESS, state.to_payload(), room_for(state.job_id)),
        *snippet_events(state, snippets),
        (DASHBOARD_UPDATE, state.to_dashboard(at), DASHBOARD_ROOM),
    ]


def created_events(state: JobState, at: float) -> list[Event]:
    """``(event, payload, room)`` for a job just created (queued) at time ``at``.

    Only the dashboard needs it: nobody watches a job's room before it exists.
    The ``jobChanged`` payload then carries what a new dashboard row needs.
    """
    return [(DASHBOARD_UPDATE, state.to_dashboard(at, created=True), DASHBOARD_ROOM)]


def push_stored(cfg: Any, store: JobStore, states: list[JobState]) -> None:
    """Push states changed outside the site (by a job) to open pages.

    Through the Socket.IO message queue when ``cfg.SOCKETIO_MESSAGE_QUEUE`` is
    set (a write-only emitter); otherwise each job id is published on
    :data:`shared.keys.STATE_CHANNEL`, where every web process's relay reads
    the stored state and pushes it.
    """
    if not states:
        return
    if cfg.SOCKETIO_MESSAGE_QUEUE:
        sio = _emitter(cfg.SOCKETIO_MESSAGE_QUEUE)
        snippets = SnippetStore(store.client, ttl=cfg.SNIPPET_TTL)
        now = time.time()
        for state in states:
            for event, payload, room in state_events(state, snippets, now):
                sio.emit(event, payload, to=room)
        return
    pipe = store.client.pipeline(transaction=False)
    for state in states:
        pipe.publish(keys.STATE_CHANNEL, state.job_id)
    pipe.execute()


@lru_cache(maxsize=2)
def _emitter(message_queue: str) -> Any:
    from flask_socketio import SocketIO

    return SocketIO(message_queue=message_queue, async_mode="threading", channel="jobcast")
