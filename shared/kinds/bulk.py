"""The bulk kind: cancel or retry every job a filter matches, as a job of its own.

Hidden: operators start it from the dashboard (``website/ops/bulk.py``) after
seeing how many jobs match; nobody starts it through ``POST /api/jobs``. The
worker runs it with the same cancel/retry logic as the site's buttons
(``shared.control``), on Redis and RQ directly, reporting "n of total" as it
goes; each changed job is pushed to open pages (``shared.events.push_stored``).
The matching ids are read once, at the start: jobs that match later are not
touched, and jobs that no longer allow the action are counted as skipped.
"""

from __future__ import annotations

from typing import Any

from shared.errors import Conflict, NotFound
from shared.jobquery import FILTER_TEXT_MAX, JobFilter, JobQuery
from shared.kinds import Context, job_kind
from shared.protocol import CANCELLABLE_STATES, RETRYABLE_STATES, STATES

BULK_KIND = "bulk"
ACTIONS = ("cancel", "retry")
# The states each action changes (shared.control's rules); jobs in any other are skipped.
ACTION_STATES = {"cancel": CANCELLABLE_STATES, "retry": RETRYABLE_STATES}
REPORT_EVERY = 25  # jobs between two progress reports

_TEXT = {"type": "string", "maxLength": FILTER_TEXT_MAX, "default": ""}


@job_kind(BULK_KIND, title="Bulk action", hidden=True, timeout=3600,
          description="Cancels or retries every job a filter matches.",
          args={"type": "object", "additionalProperties": False, "required": ["action"],
                "properties": {
                    "action": {"type": "string", "enum": list(ACTIONS)},
                    "state": {"type": "string", "enum": ["", *STATES], "default": ""},
                    "kind": _TEXT, "owner": _TEXT, "q": _TEXT, "batch": _TEXT,
                    "stalled": {"type": "string", "enum": ["", "1"], "default": ""}}})
def bulk(ctx: Context, action: str, state: str = "", kind: str = "", owner: str = "",
         q: str = "", batch: str = "", stalled: str = "") -> dict[str, Any]:
    """Apply ``action`` to each matching job; counts of done and skipped jobs."""
    jobs = ctx.lifecycle
    flt = JobFilter(state=state, kind=kind, owner=owner, q=q, batch=batch, stalled=stalled)
    ids = [job_id for job_id in JobQuery(jobs.client).iter_ids(flt) if job_id != ctx.job_id]
    ctx.log(f"{action}: {len(ids)} jobs match {flt.to_args() or 'no filter'}")
    done, skipped = 0, 0
    for n, job_id in enumerate(ids, 1):
        try:
            (jobs.cancel if action == "cancel" else jobs.retry)(job_id)
            done += 1
        except (Conflict, NotFound) as exc:
            skipped += 1
            ctx.log(f"{job_id}: skipped ({exc.message})")
        if n % REPORT_EVERY == 0 or n == len(ids):
            ctx.progress(n, total=len(ids), message=f"{done} done, {skipped} skipped of {len(ids)}")
    return {"action": action, "matched": len(ids), "done": done, "skipped": skipped}
