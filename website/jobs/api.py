"""JSON API: the kinds, start a job, read its state and log."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from shared.errors import Invalid
from shared.joblog import is_log_id, read_log
from shared.position import Positions
from shared.priority import checked, of
from shared.protocol import LOG_START
from shared.store import JobState
from shared.unique import DEDUPLICATED
from shared.webhooks import delivery_state
from website.auth.operators import is_operator
from website.auth.owners import (
    bearer_token,
    control_token,
    may_control,
    readable_job,
    request_address,
    request_owner,
    request_tenant,
)
from website.extensions import core
from website.jobs.flow import deduplicated_answer
from website.jobs.submit import read_submission

bp = Blueprint("api", __name__, url_prefix="/api")

@bp.get("/kinds")
def list_kinds() -> Response:
    """The job kinds this site starts, with their argument schemas."""
    return jsonify({"kinds": [kind.to_json() for kind in core.kinds.values()]})


@bp.post("/jobs")
def create_job() -> tuple[Response, int, dict[str, str]] | tuple[Response, int]:
    """Start a job: ``{"kind", "args"}`` (an empty body: the demo); 202 with its id,
    status URL, state and ``controlToken`` (the bearer token that lets this client
    cancel and retry it).

    With ``"runAt"`` (ISO 8601 with a zone) or ``"delaySeconds"`` it is
    ``scheduled`` until then (``website/jobs/submit.py``). With ``"after": [ids]`` it is
    ``waiting`` until they all succeeded. A kind's ``unique`` arguments that match a
    job not yet ended: 200 with that job, ``"deduplicated": true``, nothing stored
    (``website/jobs/flow.py``). ``"priority"`` above the
    kind's default: operators only (403 naming ``priority`` for anyone else).

    400 names each bad argument (``fields``); nothing is stored or enqueued then.
    429 when the caller's quota is reached (``shared/quotas.py``).
    """
    submitted = read_submission(core.kinds)
    owner = request_owner(submitted.owner)  # "owner" from the body: operators only
    priority = checked(submitted.priority, submitted.kind.policy.priority, is_operator())
    state = core.lifecycle.start(submitted.kind, submitted.args, owner=owner,
                                 webhook=submitted.webhook, run_at=submitted.run_at,
                                 tenant=request_tenant(), address=request_address(),
                                 after=submitted.after, priority=priority)
    if state.extra.get(DEDUPLICATED):  # its kind's unique arguments found a job
        return deduplicated_answer(state)
    status_url = url_for("api.job_state", job_id=state.job_id)
    body = {"id": state.job_id, "kind": submitted.kind.name, "status_url": status_url,
            "state": state.to_payload(), "controlToken": control_token(state.job_id),
            "owner": owner}
    return jsonify(body), 202, {"Location": status_url}


@bp.get("/jobs/<job_id>")
def job_state(job_id: str) -> Response | tuple[Response | str, int]:
    """The job's current state as JSON; 404 for an unknown id (or one the
    caller may not read, with ``JOB_VISIBILITY=owner``). Its webhook's delivery
    (state, attempts, ``lastStatus``) only for its owner and operators: to anyone
    else with the id it would tell what answers at the webhook's URL. A watch token
    (``Authorization: Bearer``) reads it too, as anyone with the id would."""
    state = readable_job(job_id, watch_token=bearer_token())
    body = state.to_payload()
    body.update(queue_place(state))
    delivery = delivery_state(state.extra)
    if delivery is not None and may_control(state.job_id):
        body["webhook"] = delivery
    return jsonify(body)


def positions() -> Positions:
    """The position model on the app's Redis (``shared/position.py``)."""
    return Positions(core.client, current_app.config["QUEUE_NAME"],
                     {name: kind.external for name, kind in core.kinds.items()},
                     claim_window=current_app.config["WORKER_GONE_AFTER"])


def queue_place(state: JobState) -> dict[str, Any]:
    """While a job is queued: its ``priority``, ``position``, ``eta`` and ``paused``
    (``shared/position.py``); nothing once it has left the queue."""
    place = positions().of([state]).get(state.job_id)
    if place is None:
        return {}
    return {"priority": of(state.extra.get("priority")), **place.to_json()}


@bp.get("/jobs/<job_id>/log")
def job_log(job_id: str) -> Response | tuple[Response | str, int]:
    """Lines of the job's log after ``?after=<id>`` (from the start without it).

    ``?limit=`` (1..1000, default 1000) caps the page; ``next`` is the id to ask
    after for the following page, and ``more`` says whether there is one. Who may
    read the job's state may read its log (``JOB_VISIBILITY``; a watch token too).
    """
    job_id = readable_job(job_id, watch_token=bearer_token()).job_id
    after = request.args.get("after", LOG_START)
    if not is_log_id(after):
        raise Invalid("after must be a log line id such as 1700000000000-0")
    raw_limit = request.args.get("limit", "1000")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
        raise Invalid("limit must be a whole number from 1 to 1000")
    limit = int(raw_limit)
    batch = read_log(core.client, job_id, after, limit + 1)
    lines = batch.lines[:limit]
    return jsonify({"jobId": job_id, "after": after,
                    "lines": [line.to_json() for line in lines],
                    "next": lines[-1].id if lines else after,
                    "more": len(batch.lines) > limit})
