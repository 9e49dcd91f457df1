"""Code snippets: stored in Redis, highlighted by the worker, pushed to their room.

The site and the worker share this module: the snippet hash, the store, the
list of Pygments languages, and the Socket.IO events a highlight job's update
produces (so the callback and the worker's fallback emit the same thing).

A snippet is the hash ``snippet_key(id)`` with ``id``, ``source``,
``language`` (a Pygments alias or ``auto``), ``title`` (first line, for lists),
``created_at``, ``job_id`` and, once highlighted, ``highlighted_html``,
``highlighted_at`` and ``lexer`` (the lexer's name). It expires after
``SNIPPET_TTL`` seconds. ``RECENT_SNIPPETS`` is a sorted set of ids by
creation time, trimmed by age and by count (``max_stored``: every stored
snippet is listed there, so its size is the number of snippets stored; the
pages show the newest ``RECENT_MAX``). The highlighted HTML is refused over
``SNIPPET_HTML_MAX`` bytes. ``tenant`` and ``tenant_address`` name who it counts
against (``shared/quotas.py``): its source when it is stored, and its HTML, at
its real size, when the worker stores that (``set_highlighted.lua``).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis
from pygments.lexers import get_all_lexers

from shared import keys, scripts
from shared.errors import TooLarge
from shared.protocol import SUCCEEDED, UPDATE_PROGRESS, iso_time, new_id
from shared.quotas import LUA_FIELDS as QUOTA_FIELDS
from shared.store import JobState

log = logging.getLogger(__name__)

SOURCE_MAX_BYTES = 100 * 1024
HTML_MAX_BYTES = 1024 * 1024  # default SNIPPET_HTML_MAX: Pygments' HTML is ~24x the source
AUTO_DETECT = "auto"
RECENT_MAX = 1000  # the recent-snippets index never holds more ids than this
PAGE_SIZE = 20
TITLE_MAX = 80
CSS_CLASS = "highlight"  # Pygments' HtmlFormatter class; the site's style sheet targets it

HIGHLIGHTED = "highlighted"  # what lists and pages show for a finished snippet
HIGHLIGHT_KIND = "highlight"  # the kind of the jobs that highlight snippets
HIGHLIGHT = "highlight"  # the Socket.IO event with a snippet's HTML, to snippet:<id>
RECENT_SNIPPETS = f"{keys.PREFIX}:snippets:recent"  # every stored snippet's id, by creation


def snippet_key(snippet_id: str) -> str:
    """Hash holding a snippet's source and, once done, its highlighted HTML."""
    return f"{keys.PREFIX}:snippet:{snippet_id}"


def snippet_room(snippet_id: str) -> str:
    """The Socket.IO room of the connections watching a snippet."""
    return f"snippet:{snippet_id}"

# Fields read when the source itself is not needed (lists, subscribe).
_META_FIELDS = ("id", "language", "title", "created_at", "job_id", "highlighted_at", "lexer")

@lru_cache(maxsize=1)
def language_choices() -> tuple[tuple[str, str], ...]:
    """``(alias, name)`` of every Pygments lexer that has an alias, sorted by name."""
    choices = {aliases[0]: name for name, aliases, _files, _mimes in get_all_lexers() if aliases}
    return tuple(sorted(choices.items(), key=lambda item: item[1].lower()))


@lru_cache(maxsize=1)
def known_aliases() -> frozenset[str]:
    """Every Pygments lexer alias, lower-cased (what ``language`` may be, besides auto)."""
    return frozenset(alias.lower() for _name, aliases, _files, _mimes in get_all_lexers()
                     for alias in aliases)


def is_known_language(language: str) -> bool:
    """True for ``auto`` and any alias of a Pygments lexer (case-insensitive)."""
    return language.lower() == AUTO_DETECT or language.lower() in known_aliases()


def title_of(source: str) -> str:
    """The first non-blank line of ``source``, shortened for lists."""
    for line in source.splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= TITLE_MAX else line[: TITLE_MAX - 1] + "…"
    return ""


@dataclass(frozen=True)
class Snippet:
    """A stored snippet (``source`` is empty when it was not read)."""

    snippet_id: str
    language: str
    created_at: float
    job_id: str
    source: str = ""
    title: str = ""
    highlighted_html: str = ""
    highlighted_at: float = 0.0
    lexer: str = ""

    @property
    def highlighted(self) -> bool:
        """True once the worker stored the highlighted HTML."""
        return bool(self.highlighted_at)

    def highlight_payload(self) -> dict[str, Any]:
        """The ``highlight`` event payload (``lexer``: the language actually used)."""
        return {
            "snippetId": self.snippet_id,
            "html": self.highlighted_html,
            "highlightedAt": iso_time(self.highlighted_at),
            "lexer": self.lexer,
        }

    @property
    def language_label(self) -> str:
        """What a page shows as the language: the lexer used once highlighted, else
        the chosen alias, or that it will be detected."""
        if self.lexer:
            return self.lexer
        if self.language == AUTO_DETECT:
            return "auto-detect (pending)"
        return self.language

    @classmethod
    def from_hash(cls, snippet_id: str, data: dict[str, str]) -> Snippet:
        """Build from (some of) the fields of the snippet's hash."""
        return cls(
            snippet_id=snippet_id,
            language=data.get("language") or AUTO_DETECT,
            created_at=float(data.get("created_at") or 0),
            job_id=data.get("job_id") or "",
            source=data.get("source") or "",
            title=data.get("title") or "",
            highlighted_html=data.get("highlighted_html") or "",
            highlighted_at=float(data.get("highlighted_at") or 0),
            lexer=data.get("lexer") or "",
        )


class HtmlTooLarge(TooLarge):
    """The highlighted HTML is over ``SNIPPET_HTML_MAX``: it is not stored."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the highlighted HTML would be {size / 1024 / 1024:.1f} MB, over the "
            f"{limit / 1024 / 1024:.1f} MB limit; highlight a shorter snippet")
        self.size = size
        self.limit = limit


def check_html_size(html: str, limit: int) -> None:
    """Raise :class:`HtmlTooLarge` when ``html`` is over ``limit`` bytes (UTF-8)."""
    size = len(html.encode("utf-8", errors="surrogatepass"))
    if size > limit:
        raise HtmlTooLarge(size, limit)


def progress_payload(state: JobState, snippet_id: str) -> dict[str, Any]:
    """The ``updateProgress`` payload sent to a snippet's room: the job's, with
    snippetId in place of jobId (a public snippet does not reveal its job's id)."""
    payload = {k: v for k, v in state.to_payload().items() if k != "jobId"}
    return {**payload, "snippetId": snippet_id}


class SnippetStore:
    """Reads and writes snippets in Redis (a client with ``decode_responses=True``)."""

    def __init__(self, client: redis.Redis, ttl: int = 7 * 24 * 3600,
                 html_max: int = HTML_MAX_BYTES, max_stored: int = RECENT_MAX) -> None:
        self.client = client
        self.ttl = ttl
        self.html_max = html_max
        self.max_stored = max(max_stored, RECENT_MAX)
        self._set_highlighted = scripts.register(client, "set_highlighted")

    def create(self, source: str, language: str, job_id: str,
               snippet_id: str | None = None, now: float | None = None,
               tenants: list[str] | None = None) -> Snippet:
        """Store a new snippet, list it among the recent ones, trim that list;
        ``tenants`` (:func:`shared.quotas.quota_tenants`) pay for its HTML later."""
        snippet_id = snippet_id or new_id()
        now = time.time() if now is None else now
        snippet = Snippet(snippet_id=snippet_id, language=language, created_at=now,
                          job_id=job_id, source=source, title=title_of(source))
        key = snippet_key(snippet_id)
        payers = [*(tenants or []), "", ""]
        pipe = self.client.pipeline()
        pipe.hset(key, mapping={
            "id": snippet_id, "source": source, "language": language, "title": snippet.title,
            "created_at": repr(now), "job_id": job_id, "tenant": payers[0],
            "tenant_address": payers[1],
        })
        pipe.expire(key, self.ttl)
        pipe.zadd(RECENT_SNIPPETS, {snippet_id: now})
        pipe.zremrangebyscore(RECENT_SNIPPETS, "-inf", now - self.ttl)
        pipe.zremrangebyrank(RECENT_SNIPPETS, 0, -(self.max_stored + 1))
        pipe.execute()
        return snippet

    def get(self, snippet_id: str, source: bool = True) -> Snippet | None:
        """The snippet (with its source and HTML unless ``source`` is False), or None."""
        key = snippet_key(snippet_id)
        if source:
            data: dict[str, str] = self.client.hgetall(key)  # type: ignore[assignment]
        else:
            fields = (*_META_FIELDS, "highlighted_html")
            values: list[str | None] = self.client.hmget(key, fields)  # type: ignore[assignment]
            data = {k: v for k, v in zip(fields, values, strict=True) if v is not None}
        return Snippet.from_hash(snippet_id, data) if data.get("id") else None

    def set_highlighted(self, snippet_id: str, html: str, lexer: str,
                        now: float | None = None) -> bool:
        """Store the highlighted HTML; False when the snippet no longer exists.

        Raises :class:`HtmlTooLarge` (and stores nothing) over ``html_max`` bytes.
        """
        check_html_size(html, self.html_max)
        stamp = repr(time.time() if now is None else now)
        return bool(scripts.run(self._set_highlighted, [snippet_key(snippet_id)],
                                {"html": html, "now": stamp, "lexer": lexer, **QUOTA_FIELDS}))

    def recent(self, page: int = 1, per_page: int = PAGE_SIZE) -> tuple[list[Snippet], bool]:
        """One page of recent snippets (newest first, no source) and whether more follow."""
        start = (page - 1) * per_page
        ids: list[str] = self.client.zrevrange(  # type: ignore[assignment]
            RECENT_SNIPPETS, start, start + per_page)
        more = len(ids) > per_page
        ids = ids[:per_page]
        pipe = self.client.pipeline()
        for snippet_id in ids:
            pipe.hmget(snippet_key(snippet_id), _META_FIELDS)
        snippets = []
        for snippet_id, values in zip(ids, pipe.execute(), strict=True):
            data = {k: v for k, v in zip(_META_FIELDS, values, strict=True) if v is not None}
            if data.get("id"):  # skip ids whose hash already expired
                snippets.append(Snippet.from_hash(snippet_id, data))
        return snippets, more

    def stored(self) -> int:
        """How many snippets are stored (the recent index's entries younger than the TTL)."""
        return int(self.client.zcount(RECENT_SNIPPETS, time.time() - self.ttl, "+inf"))  # type: ignore[arg-type]

    def count(self) -> int:
        """How many snippets the recent index lists (at most ``max_stored``)."""
        return int(self.client.zcard(RECENT_SNIPPETS))  # type: ignore[arg-type]

    def job_states(self, snippets: list[Snippet]) -> dict[str, str]:
        """The state of each snippet: ``highlighted``, else its job's state (one round trip)."""
        pending = [s for s in snippets if not s.highlighted]
        pipe = self.client.pipeline()
        for snippet in pending:
            pipe.hget(keys.job_key(snippet.job_id), "state")
        states = {s.snippet_id: HIGHLIGHTED for s in snippets if s.highlighted}
        for snippet, state in zip(pending, pipe.execute() if pending else [], strict=True):
            states[snippet.snippet_id] = state or "expired"
        return states


Event = tuple[str, dict[str, Any], str]  # (event name, payload, room)


def snippet_of(client: redis.Redis, job_id: str) -> str:
    """The id of the snippet a highlight job is for ('' when it cannot be told)."""
    raw = client.hget(keys.job_key(job_id), "args")
    try:
        args = json.loads(raw) if raw else {}  # type: ignore[arg-type]
    except ValueError:
        return ""
    snippet_id = args.get("snippet") if isinstance(args, dict) else None
    return snippet_id if isinstance(snippet_id, str) else ""


def snippet_events(state: JobState, client: redis.Redis) -> list[Event]:
    """The highlight kind's ``events``: what a change of its job pushes to its snippet's room.

    Every change goes to the snippet's room as ``updateProgress`` (so a failure
    reaches the page), without the job's id; when the job succeeded, ``highlight``
    with the stored HTML goes first. A Redis error reading the snippet drops its
    events: the page then learns the end from the polling endpoint.
    """
    try:
        snippet_id = snippet_of(client, state.job_id)
        snippet = (SnippetStore(client).get(snippet_id, source=False)
                   if snippet_id and state.state == SUCCEEDED else None)
    except redis.RedisError as exc:
        log.warning("job %s: could not read its snippet to push it: %s", state.job_id, exc)
        return []
    if not snippet_id:
        return []
    room = snippet_room(snippet_id)
    events: list[Event] = []
    if snippet is not None and snippet.highlighted:
        events.append((HIGHLIGHT, snippet.highlight_payload(), room))
    events.append((UPDATE_PROGRESS, progress_payload(state, snippet_id), room))
    return events
