"""Finding jobs: filters over the store's indexes, paged by a stable cursor.

The store keeps sorted sets of job ids scored by creation time, by state,
kind and owner (``shared.keys.state_index`` ...), changed in the same Lua
scripts that change a job. A :class:`JobFilter` names up to one of each; the
``query_jobs`` script walks the smallest of its indexes from a cursor,
checks the others with ``ZSCORE``, skips expired jobs and, for ``q``, looks
for the text in the job's message. The walk is bounded (``scan``), so a
rare text never blocks Redis: the page may then come back short, with a
cursor to go on from.

A cursor is ``<creation score>~<job id>``: the position of the last job
listed. Creation times never change, so paging stays correct while jobs
change state, and jobs created meanwhile (newer) never shift a later page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from shared import keys, scripts
from shared.errors import Invalid
from shared.protocol import STATES
from shared.store import JobState

PAGE_MAX = 200
SCAN_PER_CALL = 5000  # index entries one script run examines at most
SCAN_PER_PAGE = 50_000  # ... and one page request, over several runs
FILTER_TEXT_MAX = 100
_SEP = "~"
CURSOR_PATTERN = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?(e[+-]?[0-9]{1,3})?~"
                            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class BadFilter(Invalid):
    """A filter or cursor that cannot be used (answered with 400)."""


@dataclass(frozen=True)
class JobFilter:
    """Which jobs: every given part must match ('' for any)."""

    state: str = ""
    kind: str = ""
    owner: str = ""
    q: str = ""
    batch: str = ""  # a batch id: its children only
    stalled: str = ""  # "1": stalled running jobs only (shared/watch.py)

    @classmethod
    def parse(cls, args: Any) -> JobFilter:
        """From query arguments (``state``, ``kind``, ``owner``, ``q``, ``batch``,
        ``stalled=1``); :class:`BadFilter`."""
        values = {name: str(args.get(name, "") or "").strip() for name in
                  ("state", "kind", "owner", "q", "batch", "stalled")}
        if values["state"] and values["state"] not in STATES:
            raise BadFilter(f"state must be one of {', '.join(STATES)}")
        if values["stalled"] not in ("", "1"):
            raise BadFilter("stalled must be 1 (stalled jobs only) or empty")
        for name, value in values.items():
            if len(value) > FILTER_TEXT_MAX:
                raise BadFilter(f"{name} takes at most {FILTER_TEXT_MAX} characters")
        return cls(**values)

    def to_args(self) -> dict[str, str]:
        """The non-empty parts, as query arguments."""
        return {k: v for k, v in (("state", self.state), ("kind", self.kind),
                                  ("owner", self.owner), ("q", self.q),
                                  ("batch", self.batch), ("stalled", self.stalled)) if v}

    def index_keys(self) -> list[str]:
        """The indexes to intersect (the recent-jobs index for no filter)."""
        found = ([keys.state_index(self.state)] if self.state else []) + \
                ([keys.kind_index(self.kind)] if self.kind else []) + \
                ([keys.owner_index(self.owner)] if self.owner else []) + \
                ([keys.batch_index(self.batch)] if self.batch else []) + \
                ([keys.STALLED_INDEX] if self.stalled else [])
        return found or [keys.RECENT_JOBS]


def parse_cursor(text: str | None) -> tuple[str, str]:
    """``(score, id)`` from a cursor ('' for the start); :class:`BadFilter` when malformed."""
    if not text:
        return "+inf", ""
    if not CURSOR_PATTERN.fullmatch(text):
        raise BadFilter("cursor is not one this site gave")
    score, _, job_id = text.partition(_SEP)
    return score, job_id


@dataclass(frozen=True)
class Page:
    """Jobs newest first, and the cursor of the next page (None at the end)."""

    jobs: list[JobState]
    next: str | None


class JobQuery:
    """Runs filters against the store's indexes (a ``decode_responses`` client)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._query = scripts.register(client, "query_jobs")

    def _run(self, flt: JobFilter, score: str, after: str, limit: int,
             scan: int) -> dict[str, Any]:
        return scripts.pairs(scripts.run(self._query, flt.index_keys(), {
            "score": score, "after": after, "limit": limit, "budget": scan,
            "q": flt.q.lower(), "job_prefix": keys.job_key("")}))

    def ids(self, flt: JobFilter, cursor: str | None = None, limit: int = 50,
            scan: int = SCAN_PER_PAGE) -> tuple[list[str], str | None]:
        """Up to ``limit`` matching ids after ``cursor``, and the next cursor."""
        score, after = parse_cursor(cursor)
        found: list[str] = []
        scanned = 0
        while True:
            step = min(SCAN_PER_CALL, scan - scanned)
            result = self._run(flt, score, after, limit - len(found), step)
            found.extend(str(i) for i in result["ids"])
            scanned += step
            score, after = str(result["score"]), str(result["id"])
            if int(result["done"]):
                return found, None
            if len(found) >= limit or scanned >= scan:
                return found, f"{score}{_SEP}{after}" if after else None

    def page(self, flt: JobFilter, cursor: str | None = None, limit: int = 50) -> Page:
        """One page of matching jobs (expired ones between the walk and the read left out)."""
        limit = max(1, min(limit, PAGE_MAX))
        ids, nxt = self.ids(flt, cursor, limit)
        if not ids:
            return Page([], nxt)
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(keys.job_key(job_id))
        jobs = [JobState.from_hash(job_id, data)
                for job_id, data in zip(ids, pipe.execute(), strict=True) if data]
        return Page(jobs, nxt)

    def iter_ids(self, flt: JobFilter, batch: int = 500) -> Iterator[str]:
        """Every matching id, newest first, a batch at a time (for bulk actions)."""
        cursor: str | None = None
        while True:
            ids, cursor = self.ids(flt, cursor, batch)
            yield from ids
            if cursor is None:
                return

    def count(self, flt: JobFilter) -> int:
        """How many jobs match now (walks the smallest index, in bounded runs)."""
        score, after, total = "+inf", "", 0
        while True:
            result = self._run(flt, score, after, 0, SCAN_PER_CALL)
            total += int(result["found"])
            if int(result["done"]):
                return total
            score, after = str(result["score"]), str(result["id"])
