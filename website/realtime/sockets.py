"""Socket.IO handlers: map connections to rooms, then send the current state.

The order matters: a connection first joins the room and only then reads the
stored state and sends it. An update that lands between the two is then
either in the state read or delivered to the room; none can be missed.

``subscribe`` takes ``{"jobId"}`` or ``{"batchId"}``, and what other features
register (:func:`subscription`: the highlighter's ``{"snippetId"}`` and the
seed's bare snippet id string). Replies go out through the app's pusher
(``shared/push.py``), the one module that emits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from flask import Flask, current_app, request, session
from flask_socketio import ConnectionRefusedError

from shared.batches import UnknownBatch, batch_totals
from shared.joblog import is_log_id, read_log
from shared.protocol import (
    BATCH_PROGRESS,
    JOB_LOG,
    JOB_QUERY,
    SUBSCRIBE,
    UPDATE_PROGRESS,
    batch_room,
    is_uuid,
    room_for,
)
from website.auth.owners import may_read, refused_key
from website.extensions import core, socketio
from website.http.access import loggable
from website.http.security import from_another_origin
from website.realtime.limits import Refused, joined, throttle, within_replay_budget

log = logging.getLogger(__name__)


def _join_job(job_id: object, last_log_id: object = None, auth_token: object = None,
              watch_token: object = None) -> list[tuple[str, dict[str, Any]]]:
    """Join the job's room, then return the events that bring the client up to date.

    The job's state (``updateProgress``); with ``last_log_id`` (a log line id,
    ``"0-0"`` for the whole log) also the lines stored after it (``jobLog``),
    read after joining, so no line falls between the replay and the room. The
    log is replayed only when the connection joins the room now (it gets every
    line pushed while it is in it), and within the connection's replay budget
    (:func:`within_replay_budget`: a cut replay says ``more``). The
    room is left again when the job is unknown or Redis fails. With
    ``JOB_VISIBILITY=owner`` a caller who may not read the job is told the same
    as for an unknown id (the session, a ``controlToken`` or a ``watchToken`` decides).
    """
    if last_log_id is not None and not is_log_id(last_log_id):
        raise ValueError("lastLogId must be a log line id such as 1700000000000-0")
    if not is_uuid(job_id):
        raise ValueError("jobId must be a UUID")
    assert isinstance(job_id, str)
    job_id = job_id.lower()
    if not may_read(job_id, auth_token, watch_token):
        raise LookupError(f"unknown job {job_id}")
    with joined(room_for(job_id)) as fresh:
        state = core.store.get(job_id)
        if state is None:
            raise LookupError(f"unknown job {job_id}")
        events = [(UPDATE_PROGRESS, state.to_payload())]
        if isinstance(last_log_id, str) and fresh:
            replay = read_log(core.client, job_id, last_log_id,
                              current_app.config["JOB_LOG_MAX"])
            events.insert(0, (JOB_LOG, within_replay_budget(replay).to_payload()))
    return events


def _join_batch(batch_id: object) -> list[tuple[str, dict[str, Any]]]:
    """Join the batch's room, then return its totals (``batchProgress``)."""
    if not is_uuid(batch_id):
        raise ValueError("batchId must be a UUID")
    assert isinstance(batch_id, str)
    batch_id = batch_id.lower()
    with joined(batch_room(batch_id)):
        try:
            totals = batch_totals(core.client, batch_id)
        except UnknownBatch:
            raise LookupError(f"unknown batch {batch_id}") from None
    return [(BATCH_PROGRESS, totals)]


Join = Callable[[Any], list[tuple[str, dict[str, Any]]]]
SUBSCRIPTIONS = "jobcast.subscriptions"  # app.extensions: {key: join}, and the bare key


def subscription(app: Flask, key: str, join: Join, bare: bool = False) -> None:
    """Let ``subscribe`` take ``{key: value}`` on ``app``: ``join(value)`` joins the room,
    then returns the events that bring the client up to date (raising ``ValueError`` or
    ``LookupError`` to refuse). With ``bare``, a bare string means ``{key: string}``."""
    joins, bares = app.extensions.setdefault(SUBSCRIPTIONS, ({}, []))
    joins[key] = join
    if bare:
        bares[:] = [key]


def _send(events: list[tuple[str, dict[str, Any]]]) -> None:
    core.pusher.send(str(request.sid), events)  # type: ignore[attr-defined]


def _start_relay() -> None:
    relay = current_app.extensions.get("jobcast.relay")
    if relay is not None and not relay.running:
        relay.ensure_started()
    ticker = current_app.extensions.get("jobcast.positions")  # website/realtime/positions.py
    if ticker is not None and not ticker.running:
        ticker.ensure_started()


def on_connect(auth: object = None) -> None:
    """Accept a connection; with ``?jobId=`` join that job and send its state (a
    ``watchToken`` in ``auth`` reads a private job, docs/embedding.md). An
    unknown or revoked API key (the handshake's bearer token, or ``controlToken``)
    is refused."""
    job_id = request.args.get(JOB_QUERY)
    last_log_id: object = request.args.get("lastLogId")
    token = auth.get("controlToken") if isinstance(auth, dict) else None
    watching = auth.get("watchToken") if isinstance(auth, dict) else None
    try:
        bad_key = refused_key(token)
    except redis.RedisError as exc:
        log.warning("connect with an API key: Redis unavailable: %s", exc)
        raise ConnectionRefusedError("state store unavailable, retry later") from None
    if bad_key is not None:
        raise ConnectionRefusedError(bad_key)
    if from_another_origin():
        # A page of EMBED_ORIGINS: it watches with a token it was given, never as the
        # visitor's session (a same-site WebSocket handshake brings the cookie). The
        # session is this connection's own copy (Flask-SocketIO's managed session).
        session.clear()
    if isinstance(auth, dict):
        job_id = job_id if job_id is not None else auth.get("jobId")
        last_log_id = last_log_id if last_log_id is not None else auth.get("lastLogId")
    _start_relay()  # this process now has a client the worker's fallback may need to reach
    if job_id is None:
        return
    try:
        events = _join_job(job_id, last_log_id, token, watching)
    except (ValueError, LookupError, Refused) as exc:
        raise ConnectionRefusedError(str(exc)) from None
    except redis.RedisError as exc:
        log.warning("connect for job %s: Redis unavailable: %s", loggable(job_id), exc)
        raise ConnectionRefusedError("state store unavailable, retry later") from None
    _send(events)


def on_subscribe(data: object) -> dict[str, Any]:
    """``subscribe`` with ``{"jobId"}``, ``{"batchId"}`` or what a feature registered:
    join, then send the current state; acks the result.

    Anyone holding the id may subscribe (ids are unguessable UUIDs).
    """
    joins, bares = current_app.extensions.get(SUBSCRIPTIONS, ({}, []))
    if isinstance(data, str) and bares:
        data = {bares[0]: data}
    keys = ["jobId", "batchId", *joins]
    wanted = next((key for key in keys if isinstance(data, dict) and key in data), None)
    if wanted is None:
        return {"ok": False, "error": "subscribe needs an object with " + ", ".join(keys)
                + (f" (or a bare {bares[0]} string)" if bares else "")}
    assert isinstance(data, dict)
    try:
        throttle()
        bad_key = refused_key(data.get("controlToken"))
        if bad_key is not None:
            raise LookupError(bad_key)
        if wanted == "batchId":
            events = _join_batch(data["batchId"])
        elif wanted == "jobId":
            events = _join_job(data["jobId"], data.get("lastLogId"), data.get("controlToken"),
                               data.get("watchToken"))
        else:
            events = joins[wanted](data[wanted])
    except (ValueError, LookupError, Refused) as exc:
        return {"ok": False, "error": str(exc)}
    except redis.RedisError as exc:
        log.warning("subscribe: Redis unavailable: %s", exc)
        return {"ok": False, "error": "state store unavailable, retry later"}
    _send(events)
    return {"ok": True}


def register() -> None:
    """Attach the handlers to the (freshly initialised) Socket.IO server."""
    socketio.on_event("connect", on_connect)
    socketio.on_event(SUBSCRIBE, on_subscribe)
