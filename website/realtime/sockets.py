"""Socket.IO handlers: map connections to job rooms, then send the current state.

The order matters: a connection first joins the job's room and only then
reads the stored state and sends it. An update that lands between the two is
then either in the state read or delivered to the room; none can be missed.
Snippets work alike: ``subscribe`` with ``{"snippetId"}`` (or the bare id
string, as the seed's hub took it) joins ``snippet:<id>``, then sends
``highlight`` if the result is stored, else the job's state.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
import socketio as socketio_lib
from flask import current_app, request
from flask_socketio import ConnectionRefusedError

from shared.batches import UnknownBatch, batch_totals
from shared.events import state_events
from shared.joblog import is_log_id, read_log
from shared.protocol import (
    BATCH_PROGRESS,
    HIGHLIGHT,
    JOB_LOG,
    SUBSCRIBE,
    UPDATE_PROGRESS,
    batch_room,
    is_uuid,
    room_for,
    snippet_room,
)
from shared.snippets import Event, progress_payload
from shared.store import JobState
from website.extensions import redis_ext, socketio
from website.http.access import loggable
from website.http.ownership import may_read
from website.realtime.limits import Refused, joined, throttle

log = logging.getLogger(__name__)


def _join_job(job_id: object, last_log_id: object = None,
              auth_token: object = None) -> list[tuple[str, dict[str, Any]]]:
    """Join the job's room, then return the events that bring the client up to date.

    The job's state (``updateProgress``); with ``last_log_id`` (a log line id,
    ``"0-0"`` for the whole log) also the lines stored after it (``jobLog``),
    read after joining, so no line falls between the replay and the room. The
    room is left again when the job is unknown or Redis fails. With
    ``JOB_VISIBILITY=owner`` a caller who may not read the job is told the same
    as for an unknown id (the session or a ``controlToken`` decides).
    """
    if last_log_id is not None and not is_log_id(last_log_id):
        raise ValueError("lastLogId must be a log line id such as 1700000000000-0")
    if not is_uuid(job_id):
        raise ValueError("jobId must be a UUID")
    assert isinstance(job_id, str)
    job_id = job_id.lower()
    if not may_read(job_id, auth_token):
        raise LookupError(f"unknown job {job_id}")
    with joined(room_for(job_id)):
        state = redis_ext.store.get(job_id)
        if state is None:
            raise LookupError(f"unknown job {job_id}")
        events = [(UPDATE_PROGRESS, state.to_payload())]
        if isinstance(last_log_id, str):
            replay = read_log(redis_ext.client, job_id, last_log_id,
                              current_app.config["JOB_LOG_MAX"])
            events.insert(0, (JOB_LOG, replay.to_payload()))
    return events


def _join_snippet(snippet_id: object) -> list[tuple[str, dict[str, Any]]]:
    """Join the snippet's room, then return the events that bring it up to date.

    The room is left again when the snippet is unknown or Redis fails.
    """
    if not is_uuid(snippet_id):
        raise ValueError("snippetId must be a UUID")
    assert isinstance(snippet_id, str)
    snippet_id = snippet_id.lower()
    with joined(snippet_room(snippet_id)):
        snippet = redis_ext.snippets.get(snippet_id, source=False)
        if snippet is None:
            raise LookupError(f"unknown snippet {snippet_id}")
        if snippet.highlighted:
            return [(HIGHLIGHT, snippet.highlight_payload())]
        state = redis_ext.store.get(snippet.job_id)
    return [(UPDATE_PROGRESS, progress_payload(state, snippet_id))] if state else []


def _join_batch(batch_id: object) -> list[tuple[str, dict[str, Any]]]:
    """Join the batch's room, then return its totals (``batchProgress``)."""
    if not is_uuid(batch_id):
        raise ValueError("batchId must be a UUID")
    assert isinstance(batch_id, str)
    batch_id = batch_id.lower()
    with joined(batch_room(batch_id)):
        try:
            totals = batch_totals(redis_ext.client, batch_id)
        except UnknownBatch:
            raise LookupError(f"unknown batch {batch_id}") from None
    return [(BATCH_PROGRESS, totals)]


def emit_events(events: list[Event]) -> None:
    """Emit each ``(event, payload, room)`` built by :mod:`shared.events`.

    Without a message queue only this process's clients can be in a room, so an
    event for a room nobody is in (the dashboard's, while no dashboard is open;
    a job nobody watches) is not encoded at all. With the queue every event is
    published: other processes' clients may be in the room.
    """
    manager = socketio.server.manager if socketio.server is not None else None
    local = manager if type(manager) is socketio_lib.Manager else None
    sent = False
    for event, payload, room in events:
        if local is not None and next(local.get_participants("/", room), None) is None:
            continue
        socketio.emit(event, payload, to=room)
        sent = True
    if sent:  # let the connections' writer tasks send now, before the caller answers
        socketio.sleep(0)


def publish_state(state: JobState, at: float) -> None:
    """Push a job's new state (changed at ``at``) to everyone who watches it."""
    emit_events(state_events(state, redis_ext.snippets, at))


def on_connect(auth: object = None) -> None:
    """Accept a connection; with ``?jobId=`` join that job and send its state."""
    job_id = request.args.get("jobId")
    last_log_id: object = request.args.get("lastLogId")
    token = auth.get("controlToken") if isinstance(auth, dict) else None
    if isinstance(auth, dict):
        job_id = job_id if job_id is not None else auth.get("jobId")
        last_log_id = last_log_id if last_log_id is not None else auth.get("lastLogId")
    if job_id is None:
        return
    try:
        events = _join_job(job_id, last_log_id, token)
    except (ValueError, LookupError, Refused) as exc:
        raise ConnectionRefusedError(str(exc)) from None
    except redis.RedisError as exc:
        log.warning("connect for job %s: Redis unavailable: %s", loggable(job_id), exc)
        raise ConnectionRefusedError("state store unavailable, retry later") from None
    for event, payload in events:
        socketio.emit(event, payload, to=request.sid)  # type: ignore[attr-defined]


def on_subscribe(data: object) -> dict[str, Any]:
    """``subscribe`` with ``{"jobId"}``, ``{"snippetId"}`` or a bare snippet id string:
    join, then send the current state (or the ``highlight`` result); acks the result.

    Anyone holding the id may subscribe (ids are unguessable UUIDs).
    """
    if isinstance(data, str):
        data = {"snippetId": data}
    if not isinstance(data, dict) or not {"jobId", "snippetId", "batchId"} & set(data):
        return {"ok": False, "error": "subscribe needs a snippet id or an object with jobId, "
                                      "snippetId or batchId"}
    try:
        throttle()
        if "batchId" in data:
            events = _join_batch(data["batchId"])
        elif "snippetId" in data:
            events = _join_snippet(data["snippetId"])
        else:
            events = _join_job(data["jobId"], data.get("lastLogId"),
                               data.get("controlToken"))
    except (ValueError, LookupError, Refused) as exc:
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
