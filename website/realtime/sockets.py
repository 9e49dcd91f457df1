"""Socket.IO handlers: map connections to job rooms, then send the current state.

The order matters: a connection first joins the job's room and only then
reads the stored state and sends it. An update that lands between the two is
then either in the state read or delivered to the room; none can be missed.
Snippets work alike: ``subscribe`` with ``{"snippetId"}`` joins ``snippet:<id>``,
then sends ``highlight`` if the result is stored, else the job's state.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import request
from flask_socketio import ConnectionRefusedError, join_room, leave_room

from shared.events import state_events
from shared.protocol import HIGHLIGHT, SUBSCRIBE, UPDATE_PROGRESS, is_uuid, room_for, snippet_room
from shared.snippets import Event, progress_payload
from shared.store import JobState
from website.extensions import redis_ext, socketio
from website.http.access import loggable
from website.jobs.owner import may_read

log = logging.getLogger(__name__)


def _join_job(job_id: object, auth_token: object = None) -> dict[str, Any]:
    """Join the job's room, then return its current state payload.

    With ``JOB_VISIBILITY=owner`` a caller who may not read the job is told
    the same as for an unknown id (the session or a ``controlToken`` decides).
    """
    if not is_uuid(job_id):
        raise ValueError("jobId must be a UUID")
    assert isinstance(job_id, str)
    job_id = job_id.lower()
    if not may_read(job_id, auth_token):
        raise LookupError(f"unknown job {job_id}")
    join_room(room_for(job_id))
    state = redis_ext.store.get(job_id)
    if state is None:
        leave_room(room_for(job_id))
        raise LookupError(f"unknown job {job_id}")
    return state.to_payload()


def _join_snippet(snippet_id: object) -> list[tuple[str, dict[str, Any]]]:
    """Join the snippet's room, then return the events that bring it up to date."""
    if not is_uuid(snippet_id):
        raise ValueError("snippetId must be a UUID")
    assert isinstance(snippet_id, str)
    snippet_id = snippet_id.lower()
    join_room(snippet_room(snippet_id))
    snippet = redis_ext.snippets.get(snippet_id, source=False)
    if snippet is None:
        leave_room(snippet_room(snippet_id))
        raise LookupError(f"unknown snippet {snippet_id}")
    if snippet.highlighted:
        return [(HIGHLIGHT, snippet.highlight_payload())]
    state = redis_ext.store.get(snippet.job_id)
    return [(UPDATE_PROGRESS, progress_payload(state, snippet_id))] if state else []


def emit_events(events: list[Event]) -> None:
    """Emit each ``(event, payload, room)`` built by :mod:`shared.events`."""
    for event, payload, room in events:
        socketio.emit(event, payload, to=room)


def publish_state(state: JobState, at: float) -> None:
    """Push a job's new state (changed at ``at``) to everyone who watches it."""
    emit_events(state_events(state, redis_ext.snippets, at))


def on_connect(auth: object = None) -> None:
    """Accept a connection; with ``?jobId=`` join that job and send its state."""
    job_id = request.args.get("jobId")
    token = auth.get("controlToken") if isinstance(auth, dict) else None
    if job_id is None and isinstance(auth, dict):
        job_id = auth.get("jobId")
    if job_id is None:
        return
    try:
        payload = _join_job(job_id, token)
    except (ValueError, LookupError) as exc:
        raise ConnectionRefusedError(str(exc)) from None
    except redis.RedisError as exc:
        log.warning("connect for job %s: Redis unavailable: %s", loggable(job_id), exc)
        raise ConnectionRefusedError("state store unavailable, retry later") from None
    socketio.emit(UPDATE_PROGRESS, payload, to=request.sid)  # type: ignore[attr-defined]


def on_subscribe(data: object) -> dict[str, Any]:
    """``subscribe`` with ``{"jobId"}`` or ``{"snippetId"}``: join, then send the
    current state (or the ``highlight`` result); acks the result."""
    if not isinstance(data, dict) or ("jobId" not in data and "snippetId" not in data):
        return {"ok": False, "error": "subscribe needs an object with jobId or snippetId"}
    try:
        if "snippetId" in data:
            events = _join_snippet(data["snippetId"])
        else:
            events = [(UPDATE_PROGRESS, _join_job(data["jobId"], data.get("controlToken")))]
    except (ValueError, LookupError) as exc:
        return {"ok": False, "error": str(exc)}
    except redis.RedisError as exc:
        log.warning("subscribe: Redis unavailable: %s", exc)
        return {"ok": False, "error": "state store unavailable, retry later"}
    for event, payload in events:
        socketio.emit(event, payload, to=request.sid)  # type: ignore[attr-defined]
    return {"ok": True}


def register() -> None:
    """Attach the handlers to the (freshly initialised) Socket.IO server."""
    socketio.on_event("connect", on_connect)
    socketio.on_event(SUBSCRIBE, on_subscribe)
