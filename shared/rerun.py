"""Run a job again with changes (issue #28): the new job remembers the old one.

The operators' job page and, for the job's owner, its public page link to the
kind's form filled with the job's arguments (``website/jobs/rerun.py``). The new
job starts through ``Lifecycle.start`` like any other, with the old job's id
stored on it (the field ``rerun_of``); the old job lists its reruns, newest last
and at most ``RERUNS_KEPT`` (``shared.keys.job_reruns_key``), in a list that
expires with the old job's hash.

Uploads cannot be filled in again: a job's record shows each by its size only
(``shared/uploads.py``), so the form asks for the file once more.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

from shared import keys
from shared.jobstate import JobState
from shared.kinds import JobKind
from shared.lifecycle import Lifecycle
from shared.unique import DEDUPLICATED

log = logging.getLogger(__name__)

RERUN_OF = "rerun_of"  # the job field naming the job this one was run again from
RERUNS_KEPT = 20
ARGS_FIELD = "args"  # a kind without properties (any JSON object): its JSON text field


def stored_args(state: JobState) -> dict[str, Any]:
    """The arguments stored on ``state``'s job (an upload as its size), {} if unreadable."""
    try:
        found = json.loads(state.extra.get("args") or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def form_values(kind: JobKind, args: dict[str, Any]) -> dict[str, Any]:
    """The values that fill ``kind``'s form with ``args``: each property but the
    uploads; for a kind without properties (the External kind: any JSON object),
    the whole arguments as JSON text under ``args``."""
    properties = kind.args.get("properties") or {}
    if not properties:
        return {ARGS_FIELD: json.dumps(args, indent=2, ensure_ascii=False)} if args else {}
    return {name: value for name, value in args.items()
            if name in properties and name not in kind.uploads}


def start_again(lifecycle: Lifecycle, old: JobState, kind: JobKind, args: dict[str, Any],
                **start: Any) -> JobState:
    """Start a job of ``kind`` with ``args`` as a rerun of ``old`` (``start``: the
    keyword arguments of :meth:`Lifecycle.start`); its state. A start that a unique
    key answered with another job (``deduplicated``) is no rerun: nothing is linked."""
    state = lifecycle.start(kind, args, fields={RERUN_OF: old.job_id}, **start)
    if not state.extra.get(DEDUPLICATED):
        record(lifecycle.store.client, old.job_id, state.job_id)
        log.info("job %s runs job %s again", state.job_id, old.job_id)
    return state


def record(client: redis.Redis, old_id: str, new_id: str) -> None:
    """Add ``new_id`` to ``old_id``'s reruns (the newest ``RERUNS_KEPT``), expiring with
    the old job's hash."""
    name = keys.job_reruns_key(old_id)
    ttl = client.pttl(keys.job_key(old_id))
    pipe = client.pipeline()
    pipe.rpush(name, new_id)
    pipe.ltrim(name, -RERUNS_KEPT, -1)
    if isinstance(ttl, int) and ttl > 0:
        pipe.pexpire(name, ttl)
    pipe.execute()


def reruns(client: redis.Redis, job_id: str) -> list[str]:
    """The ids of the jobs run again from ``job_id``, oldest first."""
    found: list[Any] = client.lrange(keys.job_reruns_key(job_id), 0, -1)  # type: ignore[assignment]
    return [item.decode() if isinstance(item, bytes) else str(item) for item in found]
