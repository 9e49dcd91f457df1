"""Batches: ``POST /api/batches`` starts up to 10,000 jobs of one kind at once.

Who may: anyone who may start jobs (rate-limited like ``POST /api/jobs``);
reading a batch and its page take the batch id (an unguessable UUID), as for
a job. Cancelling it takes its owner (the session that created it, or the
``controlToken`` of the 202 as a bearer token) or an operator
(``OPS_TOKEN``); anyone else gets 403 and nothing changes
(``website.auth.owners``). The children are recorded with the creating
session's owner id. Totals are kept atomically with every child's change
(``shared/batches.py``); ``batchProgress`` is pushed to the room
``batch:<id>`` at most 10 times in any second (``shared/push.py``, in whichever
process stored the change); a page that subscribes gets the totals at once.
Cancelling a batch starts a ``bulk`` cancel of its children (at the front of
the queue). The optional ``onComplete`` job (any kind, an external one too) is started
exactly once, by the lifecycle that stored the change making the last child final.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, render_template, url_for

from shared.batches import BATCH_MAX, UnknownBatch, batch_owner, batch_totals
from shared.errors import Forbidden, Invalid
from shared.kinds import JobKind
from shared.kinds.validate import problems, with_defaults
from shared.priority import checked
from shared.protocol import is_uuid
from website.auth.operators import is_operator
from website.auth.owners import (
    batch_control_token,
    may_control_batch,
    request_address,
    request_owner,
    request_tenant,
)
from website.extensions import core
from website.http.body import read_json_body
from website.jobs.flow import deduplicated_items, read_after

bp = Blueprint("batches", __name__)
BODY_MAX = 8 * 1024 * 1024
ERRORS_SHOWN = 20


def _kind(name: object, where: str) -> JobKind:
    found = core.kinds.get(name) if isinstance(name, str) else None
    if found is None or found.uploads:
        raise Invalid(f"{where}: unknown kind (or one with uploads)", {where: "unknown kind"})
    return found


def _checked(kind: JobKind, raw: object, where: str, errors: dict[str, str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        errors[where] = "must be an object"
        return {}
    args = with_defaults(kind, raw)
    for name, problem in problems(kind, args).items():
        errors[f"{where}.{name}"] = problem
    return args


def read_batch(body: object) -> tuple[JobKind, list[dict[str, Any]], dict[str, Any] | None]:
    """The kind, each item's checked args and the onComplete job; :class:`Invalid`.
    (The batch's ``after``, for every item, is read by :func:`website.jobs.flow.read_after`.)"""
    if not isinstance(body, dict):
        raise Invalid('body must be a JSON object {"kind", "items": [...]}', {})
    kind = _kind(body.get("kind"), "kind")
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= BATCH_MAX:
        raise Invalid(f"items must be a list of 1 to {BATCH_MAX} argument objects",
                       {"items": f"1 to {BATCH_MAX} objects"})
    errors: dict[str, str] = {}
    checked = [_checked(kind, item, f"items[{i}]", errors) for i, item in enumerate(items)]
    done = None
    if body.get("onComplete") is not None:
        spec = body["onComplete"]
        if not isinstance(spec, dict):
            raise Invalid("onComplete must be {\"kind\", \"args\"}", {"onComplete": "an object"})
        then = _kind(spec.get("kind"), "onComplete.kind")
        done = {"kind": then.name,
                "args": _checked(then, spec.get("args", {}), "onComplete.args", errors)}
    if errors:
        shown = dict(sorted(errors.items())[:ERRORS_SHOWN])
        raise Invalid(f"{len(errors)} bad argument(s); first: {', '.join(shown)}", shown)
    return kind, checked, done


@bp.post("/api/batches")
def create() -> tuple[Response, int]:
    """Start a batch: 202 ``{"batchId", "statusUrl", "total", "controlToken", "owner"}``;
    400 naming bad items; 429 when its items pass the caller's quota or batch rate.
    ``"priority"`` applies to every item (above the kind's default: operators only,
    403 otherwise).

    ``"after": [ids]`` makes every item wait for those jobs. Items of a ``unique``
    kind that match a job not yet ended, or an earlier item, are not stored: listed
    in ``deduplicated`` (``{"index", "id"}``, ``website/jobs/flow.py``). When every
    item is: 200 ``{"batchId": null, "total": 0, "deduplicated": [...]}``, nothing stored.
    """
    body = read_json_body(BODY_MAX)
    kind, items, then = read_batch(body)
    after = read_after(body) if isinstance(body, dict) else ()
    tenant = request_tenant()  # before request_owner: it may make the session's owner id
    owner = request_owner()
    priority = checked(body.get("priority") if isinstance(body, dict) else None,
                       kind.policy.priority, is_operator())
    found: dict[int, str] = {}
    batch_id, ids = core.lifecycle.start_batch(kind, items, owner=owner, on_complete=then,
                                               tenant=tenant, address=request_address(),
                                               after=after, deduplicated=found,
                                               priority=priority)
    deduplicated = {"deduplicated": deduplicated_items(found)} if found else {}
    if not batch_id:
        return jsonify({"batchId": None, "total": 0, **deduplicated}), 200
    status_url = url_for("batches.status", batch_id=batch_id)
    return jsonify({"batchId": batch_id, "statusUrl": status_url, "total": len(ids),
                    "controlToken": batch_control_token(batch_id), "owner": owner,
                    **deduplicated}), 202


def _totals(batch_id: str) -> dict[str, Any]:
    if not is_uuid(batch_id):
        raise UnknownBatch(batch_id)
    return batch_totals(core.client, batch_id.lower())


@bp.get("/api/batches/<batch_id>")
def status(batch_id: str) -> Response:
    """The batch's totals; 404 for an unknown id."""
    return jsonify(_totals(batch_id))


@bp.post("/api/batches/<batch_id>/cancel")
def cancel(batch_id: str) -> tuple[Response, int]:
    """Cancel every child not yet final (one bulk job: while it runs, a second call
    answers the same one): 202 with its id.

    Only the batch's owner (its session or ``controlToken``) and operators: 403 otherwise.
    """
    totals = _totals(batch_id)
    if not may_control_batch(totals["batchId"], batch_owner(core.client, totals["batchId"])):
        raise Forbidden("only the batch's owner (the session or API client that created it: "
                        "its controlToken) or an operator may cancel it")
    job, _started = core.lifecycle.cancel_batch(totals["batchId"])
    return jsonify({"bulkJobId": job.job_id,
                    "statusUrl": url_for("api.job_state", job_id=job.job_id)}), 202


@bp.get("/batches/<batch_id>")
def page(batch_id: str) -> str:
    """The batch's page, live (``batchProgress``)."""
    return render_template("batch.html", totals=_totals(batch_id))
