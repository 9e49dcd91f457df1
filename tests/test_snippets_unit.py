"""Unit tests: the plain highlight function, validation, and the snippet store on real Redis."""

from __future__ import annotations

import html
import json
import re

import pytest
import redis

from shared.errors import Invalid, TooLarge
from shared.kinds.highlight import SnippetGone, highlight, pick_lexer, render, run_highlight
from shared.kinds.highlight.snippets import (
    HIGHLIGHT,
    HIGHLIGHT_KIND,
    RECENT_MAX,
    RECENT_SNIPPETS,
    SOURCE_MAX_BYTES,
    SnippetStore,
    is_known_language,
    language_choices,
    snippet_events,
    snippet_key,
    snippet_room,
    title_of,
)
from shared.protocol import (
    FAILED,
    RUNNING,
    SUCCEEDED,
    UPDATE_PROGRESS,
    ProgressUpdate,
    iso_time,
    new_id,
)
from shared.store import JobStore
from website.snippets.pages import validate_submission

HOSTILE = "<script>alert(1)</script>"


def text_of(fragment: str) -> str:
    """The text a browser shows for an HTML fragment (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment.rstrip()))


# -- highlight() ------------------------------------------------------------

def test_highlight_python_uses_css_classes_and_keeps_the_text() -> None:
    source = "def add(a, b):\n    return a + b\n"
    out = highlight(source, "python")
    assert out.startswith('<div class="highlight"><pre>')
    assert '<span class="k">def</span>' in out
    assert '<span class="nf">add</span>' in out
    assert "style=" not in out  # classes only: the site serves the style sheet
    assert text_of(out) == source


@pytest.mark.parametrize("language", ["html", "python", "text", "auto"])
def test_hostile_source_is_escaped_whatever_the_lexer(language: str) -> None:
    out = highlight(HOSTILE + "\n", language)
    assert "<script" not in out.lower()
    assert "&lt;" in out
    assert text_of(out) == HOSTILE + "\n"


def test_auto_detect_guesses_a_lexer_and_falls_back_to_text() -> None:
    _html, lexer = render("#!/usr/bin/env python\nimport os\nprint(os.getcwd())\n", "auto")
    assert lexer == "Python"
    assert pick_lexer("just some words", "auto").name  # never raises


def test_aliases_are_case_insensitive_and_unknown_ones_raise() -> None:
    assert pick_lexer("x = 1", "PY").name == "Python"
    with pytest.raises(ValueError, match="unknown language"):
        pick_lexer("x = 1", "no-such-language")


# -- validation -------------------------------------------------------------

def test_language_list_is_pygments_aliases() -> None:
    choices = dict(language_choices())
    assert choices["python"] == "Python"
    assert len(choices) > 100
    assert all(is_known_language(alias) for alias in choices)
    assert is_known_language("auto") and is_known_language("Py")
    assert not is_known_language("klingon")


def test_validate_accepts_exactly_the_limit_in_utf8_bytes() -> None:
    at_limit = "é" * (SOURCE_MAX_BYTES // 2)  # two bytes each
    assert validate_submission(at_limit, "text") == (at_limit, "text")
    with pytest.raises(Invalid) as info:
        validate_submission(at_limit + "x", "text")
    assert isinstance(info.value, TooLarge) and "100 KB" in info.value.message


@pytest.mark.parametrize("source,language,status,fragment", [
    ("", "python", 400, "empty"),
    ("  \n\t", None, 400, "empty"),
    (None, "python", 400, "text"),
    (["x"], "python", 400, "text"),
    ("x = 1", "cobol-2099", 400, "Unknown language"),
    ("x = 1", 7, 400, "language"),
])
def test_validate_refuses_bad_input(source: object, language: object, status: int,
                                    fragment: str) -> None:
    with pytest.raises(Invalid) as info:
        validate_submission(source, language)
    assert isinstance(info.value, TooLarge) == (status == 413)
    assert fragment in info.value.message


def test_validate_normalises_language_and_newlines() -> None:
    assert validate_submission("a\r\nb", "") == ("a\nb", "auto")
    assert validate_submission("a", " Python ") == ("a", "python")


def test_title_is_the_first_non_blank_line_shortened() -> None:
    assert title_of("\n\n  def f():\n    pass") == "def f():"
    assert len(title_of("x" * 500)) == 80


# -- store and events (real Redis) ------------------------------------------

def test_store_create_get_highlight_and_expiry(redis_client: redis.Redis) -> None:
    store = SnippetStore(redis_client, ttl=3600)
    job_id = new_id()
    snippet = store.create("print(1)\n", "python", job_id)
    assert 3590 < redis_client.ttl(snippet_key(snippet.snippet_id)) <= 3600
    got = store.get(snippet.snippet_id)
    assert got is not None and got.source == "print(1)\n" and not got.highlighted
    assert store.set_highlighted(snippet.snippet_id, "<div>x</div>", "Python", now=1000.5)
    meta = store.get(snippet.snippet_id, source=False)
    assert meta is not None and meta.source == "" and meta.highlighted_html == "<div>x</div>"
    assert meta.highlight_payload() == {"snippetId": snippet.snippet_id, "html": "<div>x</div>",
                                        "highlightedAt": iso_time(1000.5), "lexer": "Python"}
    # an expired snippet is not resurrected by a late result
    redis_client.delete(snippet_key(snippet.snippet_id))
    assert not store.set_highlighted(snippet.snippet_id, "<div>x</div>", "Python")
    assert not redis_client.exists(snippet_key(snippet.snippet_id))
    assert store.get(snippet.snippet_id) is None


def test_recent_is_paginated_newest_first_and_bounded(redis_client: redis.Redis) -> None:
    store = SnippetStore(redis_client, ttl=3600)
    ids = [store.create(f"line {i}", "text", new_id(), now=1_000_000 + i).snippet_id
           for i in range(5)]
    redis_client.delete(snippet_key(ids[2]))  # expired hash: skipped in the list
    first, more = store.recent(page=1, per_page=2)
    assert [s.snippet_id for s in first] == [ids[4], ids[3]] and more
    second, more = store.recent(page=2, per_page=2)
    assert [s.snippet_id for s in second] == [ids[1]] and more
    third, more = store.recent(page=3, per_page=2)
    assert [s.snippet_id for s in third] == [ids[0]] and not more
    assert all(s.source == "" for s in first)  # lists never load sources
    # size bound on the index
    pipe = redis_client.pipeline()
    pipe.zadd(RECENT_SNIPPETS, {f"old-{i}": 1_999_000 + i / 10 for i in range(RECENT_MAX)})
    pipe.execute()
    newest = store.create("newest", "text", new_id(), now=2_000_000).snippet_id
    assert redis_client.zcard(RECENT_SNIPPETS) == RECENT_MAX
    assert redis_client.zscore(RECENT_SNIPPETS, newest) is not None
    assert redis_client.zscore(RECENT_SNIPPETS, "old-0") is None  # oldest dropped
    # age bound: creating with a later clock drops everything older than the TTL
    store.create("much later", "text", new_id(), now=2_000_000 + 3601)
    assert redis_client.zcard(RECENT_SNIPPETS) == 1


def test_a_highlight_jobs_changes_go_to_its_snippets_room(redis_client: redis.Redis) -> None:
    """The kind's ``events``: the job's state without its id, then the HTML once done."""
    jobs, snippets = JobStore(redis_client), SnippetStore(redis_client)
    job_id = new_id()
    snippet = snippets.create("x = 1", "python", job_id)
    jobs.create(job_id, kind=HIGHLIGHT_KIND, args=json.dumps({"snippet": snippet.snippet_id}))
    running = jobs.apply(ProgressUpdate(job_id=job_id, progress=10, state=RUNNING, seq=1)).state
    assert running is not None and running.kind == HIGHLIGHT_KIND
    room = snippet_room(snippet.snippet_id)
    assert snippet_events(running, redis_client) == [
        (UPDATE_PROGRESS, {"progress": 10, "state": RUNNING, "message": "",
                           "snippetId": snippet.snippet_id}, room)]

    run_highlight(snippet.snippet_id, snippets, lambda *args, **kwargs: None)
    done = jobs.apply(ProgressUpdate(job_id=job_id, progress=100, state=SUCCEEDED, seq=2)).state
    assert done is not None
    events = snippet_events(done, redis_client)
    assert [(name, room_) for name, _payload, room_ in events] == [(HIGHLIGHT, room),
                                                                  (UPDATE_PROGRESS, room)]
    stored = snippets.get(snippet.snippet_id)
    assert stored is not None and events[0][1]["html"] == stored.highlighted_html
    assert events[0][1]["html"] == highlight("x = 1", "python")


def test_a_job_that_names_no_snippet_has_no_snippet_events(redis_client: redis.Redis) -> None:
    jobs = JobStore(redis_client)
    job_id = new_id()
    jobs.create(job_id, kind="demo")
    state = jobs.apply(ProgressUpdate(job_id=job_id, progress=0, state=FAILED)).state
    assert state is not None and state.kind == "demo"
    assert snippet_events(state, redis_client) == []


def test_run_highlight_raises_for_a_missing_snippet(redis_client: redis.Redis) -> None:
    reports: list[tuple[object, ...]] = []
    with pytest.raises(SnippetGone):
        run_highlight(new_id(), SnippetStore(redis_client),
                      lambda *args, **kwargs: reports.append((*args, kwargs)))
    assert reports == [(10, {"message": "highlighting"})]
