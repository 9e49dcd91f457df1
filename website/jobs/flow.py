"""Flow control at the site's door: who may wait for which jobs, and who learns a
job that a unique start found.

* ``after`` (``shared/after.py``): a start may wait only for jobs the caller may
  read (``website.auth.owners.may_read``: anyone with the id, or with
  ``JOB_VISIBILITY=owner`` their owner and operators). An id that names no job and
  one the caller may not read get the same 400 naming ``after``, so the answer
  never tells whether someone else's job exists.
* A start that a kind's ``unique`` arguments deduplicate (``shared/unique.py``)
  answers the job that holds the key only to a caller who may read that job; with
  ``JOB_VISIBILITY=owner`` anyone else gets 409 without its id. Its
  ``controlToken`` and owner go only to those who may control it (its owner,
  operators). See docs/security.md.
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, url_for

from shared.after import check_after
from shared.errors import Conflict, Invalid
from shared.jobstate import JobState
from website.auth.owners import control_token, may_control, may_read
from website.extensions import core

DEDUPLICATED_REFUSED = ("a job of this kind with the same unique arguments has not ended yet, "
                        "and you may not read it")


def read_after(body: dict[str, Any], name: str = "after") -> tuple[str, ...]:
    """The checked ids of the body's ``after`` (none when absent): each one a job the
    caller may read; :class:`Invalid` naming ``after`` otherwise."""
    if name not in body:
        return ()
    ids = check_after(body[name])  # null, like any other non-list: 400
    unknown = [job_id for job_id in ids if not may_read(job_id)]
    unknown += core.lifecycle.waits.missing([job_id for job_id in ids if job_id not in unknown])
    if unknown:
        first = next(job_id for job_id in ids if job_id in unknown)
        raise Invalid(f"after names an unknown job: {first}", {"after": f"unknown job {first}"})
    return ids


def may_learn(job_id: str) -> bool:
    """True when the caller may be told the id of the job a unique start found."""
    return may_read(job_id)


def deduplicated_answer(state: JobState) -> tuple[Response, int, dict[str, str]]:
    """200 for a start that found ``state``'s job with the same unique arguments: the
    202's shape with ``"deduplicated": true``; the ``controlToken`` and owner only for
    who may control it. 409 (:class:`Conflict`) when the caller may not read it."""
    if not may_learn(state.job_id):
        raise Conflict(DEDUPLICATED_REFUSED, {"args": "a job with these values has not ended"})
    status_url = url_for("api.job_state", job_id=state.job_id)
    body: dict[str, Any] = {"id": state.job_id, "kind": state.kind, "status_url": status_url,
                            "state": state.to_payload(), "deduplicated": True}
    if may_control(state.job_id):
        body.update(controlToken=control_token(state.job_id), owner=state.owner)
    return jsonify(body), 200, {"Location": status_url}


def deduplicated_items(found: dict[int, str]) -> list[dict[str, Any]]:
    """A batch's deduplicated items, ``{"index", "id"}`` in index order (the id only
    when the caller may read that job)."""
    return [{"index": index, **({"id": job_id} if may_learn(job_id) else {})}
            for index, job_id in sorted(found.items())]
