"""Batches: ``POST /api/batches`` starts up to 10,000 jobs of one kind at once.

Who may: anyone who may start jobs (rate-limited like ``POST /api/jobs``);
reading a batch and its page take the batch id (an unguessable UUID), as for
a job. Cancelling it takes its owner (the session that created it, or the
``controlToken`` of the 202 as a bearer token) or an operator
(``OPS_TOKEN``); anyone else gets 403 and nothing changes
(``website.http.ownership``). The children are recorded with the creating
session's owner id. Totals are kept atomically with every child's change
(``shared/batches.py``); ``batchProgress`` is pushed to the room
``batch:<id>`` at most 10 times in any second (``after_child_change``, also
run by the worker's direct path); a page that subscribes gets the totals at once.
Cancelling a batch starts a ``bulk`` cancel of its children (at the front of
the queue). The optional ``onComplete`` job is started exactly once, by the
change that makes the last child final.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, url_for
from rq import Queue

from shared.batches import (
    BATCH_MAX,
    UnknownBatch,
    after_child_change,
    batch_owner,
    batch_totals,
    create_batch,
)
from shared.kinds import JobKind
from shared.kinds.bulk import BULK_KIND
from shared.kinds.validate import check_args, with_defaults
from shared.protocol import RUN_KIND_JOB, is_uuid
from shared.signing import sign_job_token
from shared.store import JobState
from website.extensions import redis_ext, socketio
from website.http.body import read_json_body
from website.http.errors import error_response
from website.http.ownership import batch_control_token, may_control_batch, request_owner
from website.http.storage import ensure_room
from website.jobs.services import hidden_kind, kinds, start_kind

log = logging.getLogger(__name__)
bp = Blueprint("batches", __name__)
BODY_MAX = 8 * 1024 * 1024
ERRORS_SHOWN = 20


class BadBatch(ValueError):
    """A batch submission that cannot start (400 with the bad fields)."""

    def __init__(self, message: str, fields: dict[str, str]) -> None:
        super().__init__(message)
        self.fields = fields


def _kind(name: object, where: str) -> JobKind:
    found = kinds().get(name) if isinstance(name, str) else None
    if found is None or found.uploads:
        raise BadBatch(f"{where}: unknown kind (or one with uploads)", {where: "unknown kind"})
    return found


def _checked(kind: JobKind, raw: object, where: str, errors: dict[str, str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        errors[where] = "must be an object"
        return {}
    args = with_defaults(kind, raw)
    problems = check_args(kind, args) or (kind.check(args) if kind.check else {})
    for name, problem in problems.items():
        errors[f"{where}.{name}"] = problem
    return args


def read_batch(body: object) -> tuple[JobKind, list[dict[str, Any]], dict[str, Any] | None]:
    """The kind, each item's checked args and the onComplete job; :class:`BadBatch`."""
    if not isinstance(body, dict):
        raise BadBatch('body must be a JSON object {"kind", "items": [...]}', {})
    kind = _kind(body.get("kind"), "kind")
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= BATCH_MAX:
        raise BadBatch(f"items must be a list of 1 to {BATCH_MAX} argument objects",
                       {"items": f"1 to {BATCH_MAX} objects"})
    errors: dict[str, str] = {}
    checked = [_checked(kind, item, f"items[{i}]", errors) for i, item in enumerate(items)]
    done = None
    if body.get("onComplete") is not None:
        spec = body["onComplete"]
        if not isinstance(spec, dict):
            raise BadBatch("onComplete must be {\"kind\", \"args\"}", {"onComplete": "an object"})
        then = _kind(spec.get("kind"), "onComplete.kind")
        done = {"kind": then.name,
                "args": _checked(then, spec.get("args", {}), "onComplete.args", errors)}
    if errors:
        shown = dict(sorted(errors.items())[:ERRORS_SHOWN])
        raise BadBatch(f"{len(errors)} bad argument(s); first: {', '.join(shown)}", shown)
    return kind, checked, done


def _enqueue(queue: Queue, kind: JobKind, ids: list[str], items: list[dict[str, Any]]) -> None:
    cfg = current_app.config
    for start in range(0, len(ids), 500):
        pipe = queue.connection.pipeline()
        queue.enqueue_many([Queue.prepare_data(
            RUN_KIND_JOB, args=(job_id,),
            kwargs={"token": sign_job_token(cfg["SECRET_KEY"], job_id), "kind_name": kind.name,
                    "kind_args": args},
            job_id=job_id, timeout=kind.timeout or cfg["JOB_TIMEOUT"],
            result_ttl=cfg["JOB_TTL"], failure_ttl=cfg["JOB_TTL"])
            for job_id, args in zip(ids[start:start + 500], items[start:start + 500], strict=True)],
            pipeline=pipe)
        pipe.execute()


@bp.post("/api/batches")
def create() -> tuple[Response, int] | tuple[Response | str, int]:
    """Start a batch: 202 ``{"batchId", "statusUrl", "total", "controlToken", "owner"}``;
    400 naming bad items."""
    try:
        kind, items, then = read_batch(read_json_body(BODY_MAX))
    except BadBatch as exc:
        return jsonify({"error": str(exc), "fields": exc.fields}), 400
    ensure_room()
    owner = request_owner()
    if kind.external:  # claimed over HTTP by workers in any language, never by RQ
        from website.workers.queues import queues

        batch_id, ids = create_batch(redis_ext.store, kind.name, items, owner=owner,
                                     on_complete=then,
                                     child_fields={"external": "1", "attempt": "1"})
        queues().push_many(ids, kind.name)
    else:
        batch_id, ids = create_batch(redis_ext.store, kind.name, items, owner=owner,
                                     on_complete=then)
        _enqueue(redis_ext.queue, kind, ids, items)
    log.info("batch %s: %s jobs of %s enqueued", batch_id, len(ids), kind.name)
    status_url = url_for("batches.status", batch_id=batch_id)
    return jsonify({"batchId": batch_id, "statusUrl": status_url, "total": len(ids),
                    "controlToken": batch_control_token(batch_id), "owner": owner}), 202


def _totals(batch_id: str) -> dict[str, Any]:
    if not is_uuid(batch_id):
        raise UnknownBatch(batch_id)
    return batch_totals(redis_ext.client, batch_id.lower())


@bp.get("/api/batches/<batch_id>")
def status(batch_id: str) -> Response | tuple[Response | str, int]:
    """The batch's totals; 404 for an unknown id."""
    try:
        return jsonify(_totals(batch_id))
    except UnknownBatch:
        return error_response(404, "unknown batch id")


@bp.post("/api/batches/<batch_id>/cancel")
def cancel(batch_id: str) -> tuple[Response, int] | tuple[Response | str, int]:
    """Cancel every child not yet final (a bulk job, first in the queue): 202 with its id.

    Only the batch's owner (its session or ``controlToken``) and operators: 403 otherwise.
    """
    try:
        totals = _totals(batch_id)
    except UnknownBatch:
        return error_response(404, "unknown batch id")
    if not may_control_batch(totals["batchId"], batch_owner(redis_ext.client, totals["batchId"])):
        return error_response(403, "only the batch's owner (the session or API client that "
                                   "created it: its controlToken) or an operator may cancel it")
    job = start_kind(hidden_kind(BULK_KIND), {"action": "cancel", "batch": totals["batchId"]},
                     owner=f"batch:{totals['batchId']}", at_front=True)
    return jsonify({"bulkJobId": job.job_id,
                    "statusUrl": url_for("api.job_state", job_id=job.job_id)}), 202


@bp.get("/batches/<batch_id>")
def page(batch_id: str) -> str | tuple[Response | str, int]:
    """The batch's page, live (``batchProgress``)."""
    try:
        totals = _totals(batch_id)
    except UnknownBatch:
        return error_response(404, "unknown batch id")
    return render_template("batch.html", totals=totals)


def _start_then(kind_name: str, args: dict[str, Any], owner: str) -> str | None:
    kind = kinds().get(kind_name)
    return start_kind(kind, args, owner=owner).job_id if kind is not None else None


def _emit(event: str, payload: dict[str, Any], room: str) -> None:
    socketio.emit(event, payload, to=room)


def after_change(state: JobState) -> None:
    """A child changed: push the totals (throttled) and, once, start ``onComplete``."""
    after_child_change(redis_ext.client, state, _start_then, _emit)
