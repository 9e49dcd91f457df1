"""The highlighter end to end: real Redis, gunicorn+eventlet site, RQ worker, Socket.IO client.

To see a snippet while it is still queued, a test first occupies the stack's
single worker with a job that blocks until the test releases it; the snippet's
highlight job then waits behind it, deterministically.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from rq import Queue
from rq.job import Job

from shared.config import Config
from shared.kinds.highlight import run_highlight
from shared.kinds.highlight.snippets import HIGHLIGHT, HIGHLIGHT_KIND, SnippetStore, snippet_key
from shared.protocol import RUN_KIND_JOB, UPDATE_PROGRESS, ProgressUpdate, new_id
from shared.rqconf import SERIALIZER
from shared.signing import sign_job_token
from shared.store import JobStore
from tests.conftest import Stack
from tests.highlight_jobs import BLOCKER_JOB, SLOW_HIGHLIGHT_JOB
from tests.support import (
    TEST_SECRET_KEY,
    EventRecorder,
    free_port,
    stack_env,
    start_web,
    wait_until,
)
from worker.boundary import DirectStore

HOSTILE = "<script>alert(1)</script>"
PYTHON = "def greet(name):\n    return f'hello {name}'\n"
Events = list[tuple[str, Any]]


@pytest.fixture(scope="module")
def rq_queue(stack: Stack) -> Iterator[Queue]:
    """The stack's RQ queue, for the test-only jobs."""
    conn = redis.Redis.from_url(stack.env["REDIS_URL"])
    yield Queue(Config(environ=stack.env).QUEUE_NAME, connection=conn, serializer=SERIALIZER)
    conn.close()


@pytest.fixture(scope="module")
def text_redis(stack: Stack) -> Iterator[redis.Redis]:
    """A str client on the stack's Redis."""
    client = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    yield client
    client.close()


@contextmanager
def worker_busy(queue: Queue) -> Iterator[None]:
    """Keep the single worker busy for the duration of the block."""
    release = f"test:release:{new_id()}"
    job = queue.enqueue(BLOCKER_JOB, release, job_timeout=90)
    try:
        wait_until(lambda: job.get_status(refresh=True) == "started", timeout=20,
                   what="the blocker job to start")
        yield
    finally:
        queue.connection.rpush(release, "go")
        wait_until(lambda: job.get_status(refresh=True) == "finished", timeout=20,
                   what="the blocker job to finish")


def submit(stack: Stack, source: str, language: str = "auto") -> dict[str, Any]:
    """POST /api/snippets; the 202 body."""
    resp = requests.post(stack.url + "/api/snippets",
                         json={"source": source, "language": language}, timeout=5)
    assert resp.status_code == 202, resp.text
    return resp.json()  # type: ignore[no-any-return]


def subscribe(stack: Stack, snippet_id: str) -> EventRecorder:
    """A real Socket.IO client subscribed to the snippet (ack checked)."""
    return subscribe_url(stack.url, snippet_id)


def subscribe_url(url: str, snippet_id: str) -> EventRecorder:
    """A real Socket.IO client on ``url`` subscribed to the snippet (ack checked)."""
    rec = EventRecorder(url)
    ack = rec.client.call("subscribe", {"snippetId": snippet_id}, timeout=5)
    assert ack == {"ok": True}, ack
    return rec


def got(event: str, **fields: Any) -> Callable[[Events], bool]:
    """Predicate: an ``event`` whose payload has all of ``fields``."""
    def check(events: Events) -> bool:
        return any(name == event and isinstance(data, dict)
                   and all(data.get(k) == v for k, v in fields.items())
                   for name, data in events)
    return check


def poll(stack: Stack, snippet_id: str) -> requests.Response:
    """GET the polling endpoint."""
    return requests.get(f"{stack.url}/snippets/{snippet_id}/highlighted", timeout=5)


def test_push_delivers_highlight_and_polling_goes_204_then_200_with_the_same_html(
        stack: Stack, rq_queue: Queue) -> None:
    with worker_busy(rq_queue):
        body = submit(stack, PYTHON, "python")
        sid = body["id"]
        first = poll(stack, sid)
        assert first.status_code == 204 and first.headers["X-Job-State"] == "queued"
        rec = subscribe(stack, sid)
        rec.wait_for(got(UPDATE_PROGRESS, snippetId=sid, state="queued"), timeout=5,
                     what="the current state, sent on subscribe")
        assert rec.payloads(HIGHLIGHT) == []
    try:
        events = rec.wait_for(got(UPDATE_PROGRESS, snippetId=sid, state="succeeded"),
                              timeout=20, what="the job to succeed")
    finally:
        rec.close()
    pushed = rec.payloads(HIGHLIGHT)
    assert len(pushed) == 1 and pushed[0]["snippetId"] == sid
    assert '<span class="k">def</span>' in pushed[0]["html"]
    assert pushed[0]["highlightedAt"].endswith("Z")
    names = [name for name, data in events if data.get("snippetId") == sid]
    assert names.index(HIGHLIGHT) < len(names) - 1  # the result came before "succeeded"

    second = poll(stack, sid)
    assert second.status_code == 200 and second.headers["Content-Type"].startswith("text/html")
    assert second.text == pushed[0]["html"]
    assert second.headers["X-Highlighted-At"] == pushed[0]["highlightedAt"]
    api = requests.get(f"{stack.url}/api/snippets/{sid}", timeout=5).json()
    assert api["html"] == pushed[0]["html"] and api["lexer"] == "Python"
    assert api["state"] == "highlighted" and api["job"]["state"] == "succeeded"


def test_a_client_subscribing_after_the_job_finished_gets_the_result_at_once(
        stack: Stack) -> None:
    sid = submit(stack, "SELECT name FROM users WHERE id = 1;", "sql")["id"]
    wait_until(lambda: poll(stack, sid).status_code == 200, timeout=20, what="highlighting")
    rec = subscribe(stack, sid)
    try:
        rec.wait_for(got(HIGHLIGHT, snippetId=sid), timeout=5, what="highlight on subscribe")
    finally:
        rec.close()
    assert rec.payloads(HIGHLIGHT)[0]["html"] == poll(stack, sid).text
    assert rec.payloads(UPDATE_PROGRESS) == []  # done: the result, nothing else


def test_subscribe_refuses_malformed_and_unknown_snippets(stack: Stack) -> None:
    rec = EventRecorder(stack.url)
    try:
        for bad in ("nope", new_id(), 42):
            ack = rec.client.call("subscribe", {"snippetId": bad}, timeout=5)
            assert ack["ok"] is False and ack["error"], ack
    finally:
        rec.close()


def test_subscribe_takes_a_bare_snippet_id_like_the_seed_hub(stack: Stack) -> None:
    sid = submit(stack, "SELECT 1;", "sql")["id"]
    wait_until(lambda: poll(stack, sid).status_code == 200, timeout=20, what="highlighting")
    job_id = redis.Redis.from_url(stack.redis.url, decode_responses=True).hget(
        snippet_key(sid), "job_id")  # the public JSON does not show it
    rec = EventRecorder(stack.url)
    try:
        assert rec.client.call("subscribe", sid.upper(), timeout=5) == {"ok": True}
        rec.wait_for(got(HIGHLIGHT, snippetId=sid), timeout=5, what="highlight on bare subscribe")
        for bad in (new_id(), job_id, "not-a-uuid", ""):  # a bare id is a snippet id
            ack = rec.client.call("subscribe", bad, timeout=5)
            assert ack["ok"] is False and ack["error"], (bad, ack)
        assert "unknown snippet" in rec.client.call("subscribe", new_id(), timeout=5)["error"]
        assert "UUID" in rec.client.call("subscribe", "not-a-uuid", timeout=5)["error"]
        assert rec.client.call("subscribe", {"jobId": job_id}, timeout=5) == {"ok": True}
        rec.wait_for(got(UPDATE_PROGRESS, jobId=job_id, state="succeeded"), timeout=5,
                     what="the job's state on an object subscribe")
    finally:
        rec.close()
    assert len(rec.payloads(HIGHLIGHT)) == 1  # the refused ones joined nothing


def test_hostile_source_is_escaped_on_the_page_and_in_the_highlighted_html(
        stack: Stack) -> None:
    session = requests.Session()
    page = session.get(stack.url + "/snippets", timeout=5).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)  # once the site has CSRF
    data = {"source": HOSTILE, "language": "auto", **({"csrf_token": token[1]} if token else {})}
    resp = session.post(stack.url + "/snippets", data=data, allow_redirects=False, timeout=5)
    assert resp.status_code == 303, resp.text
    page_url = stack.url + resp.headers["Location"]
    sid = page_url.rsplit("/", 1)[1]
    html = wait_until(lambda: poll(stack, sid).status_code == 200 and poll(stack, sid).text,
                      timeout=20, what="highlighting")
    assert "<script" not in html.lower()
    shown = unescape(re.sub(r"<[^>]*>", "", html))  # the text a browser shows
    assert HOSTILE in shown  # highlighted as HTML (auto), every "<" escaped
    page = requests.get(page_url, timeout=5).text
    assert html in page  # the highlighted HTML replaced the source
    # done: no snippet or Socket.IO script; only the site-wide protocol data and reader
    scripts = re.findall(r"<script([^>]*)>", page, flags=re.IGNORECASE)
    assert all('type="application/json"' in attrs or "js/protocol.js" in attrs
               for attrs in scripts), scripts
    assert "snippet.js" not in page and "socket.io" not in page
    assert "alert(1)" in page


def _queued_highlight(stack: Stack, text_redis: redis.Redis, queue: Queue, function: str,
                      job_timeout: int, delete_snippet: bool = False) -> tuple[str, EventRecorder]:
    """Store a snippet and its job like the site does, subscribe, then enqueue ``function``
    (the highlight kind's run, or a test's stand-in for it)."""
    job_id = new_id()
    snippet = SnippetStore(text_redis).create(PYTHON, "python", job_id)
    JobStore(text_redis).create(job_id, kind=HIGHLIGHT_KIND,
                                args=json.dumps({"snippet": snippet.snippet_id}))
    rec = subscribe(stack, snippet.snippet_id)
    if delete_snippet:
        text_redis.delete(snippet_key(snippet.snippet_id))
    token = sign_job_token(TEST_SECRET_KEY, job_id)
    if function == RUN_KIND_JOB:
        queue.enqueue(function, job_id, kind_name=HIGHLIGHT_KIND,
                      kind_args={"snippet": snippet.snippet_id}, token=token, job_id=job_id,
                      job_timeout=job_timeout)
    else:
        queue.enqueue(function, job_id, snippet=snippet.snippet_id, token=token, job_id=job_id,
                      job_timeout=job_timeout)
    return snippet.snippet_id, rec


def test_a_highlight_that_raises_ends_failed_and_is_pushed(
        stack: Stack, text_redis: redis.Redis, rq_queue: Queue) -> None:
    sid, rec = _queued_highlight(stack, text_redis, rq_queue, RUN_KIND_JOB, job_timeout=30,
                                 delete_snippet=True)
    try:
        rec.wait_for(got(UPDATE_PROGRESS, snippetId=sid, state="failed"), timeout=20,
                     what="the failure")
    finally:
        rec.close()
    failed = [p for p in rec.payloads(UPDATE_PROGRESS) if p["state"] == "failed"][0]
    assert "SnippetGone" in failed["message"]
    assert rec.payloads(HIGHLIGHT) == []


def test_a_highlight_past_the_job_timeout_ends_failed_and_is_pushed(
        stack: Stack, text_redis: redis.Redis, rq_queue: Queue) -> None:
    sid, rec = _queued_highlight(stack, text_redis, rq_queue, SLOW_HIGHLIGHT_JOB, job_timeout=1)
    try:
        rec.wait_for(got(UPDATE_PROGRESS, snippetId=sid, state="running"), timeout=20,
                     what="the job to start")
        rec.wait_for(got(UPDATE_PROGRESS, snippetId=sid, state="failed"), timeout=20,
                     what="the timeout to be reported")
    finally:
        rec.close()
    failed = [p for p in rec.payloads(UPDATE_PROGRESS) if p["state"] == "failed"][0]
    assert "Timeout" in failed["message"], failed
    assert "jobId" not in failed  # a snippet's room never learns its job's id
    stored = SnippetStore(text_redis).get(sid, source=False)
    assert stored is not None
    job_id = stored.job_id
    rq_job = Job.fetch(job_id, connection=rq_queue.connection, serializer=SERIALIZER)
    wait_until(lambda: rq_job.get_status(refresh=True) == "failed", timeout=20,
               what="RQ to record the failure")

    # pages and pollers learn it too, and stop waiting
    resp = poll(stack, sid)
    assert resp.status_code == 204 and resp.headers["X-Job-State"] == "failed"
    page = requests.get(f"{stack.url}/snippets/{sid}", timeout=5).text
    assert '<strong id="state">failed</strong>' in page
    assert 'http-equiv="refresh"' not in page
    late = subscribe(stack, sid)
    try:
        late.wait_for(got(UPDATE_PROGRESS, snippetId=sid, state="failed"), timeout=5,
                      what="the failed state on subscribe")
    finally:
        late.close()


def test_worker_fallback_pushes_the_result_through_the_message_queue(
        redis_url: str, redis_client: redis.Redis, log_dir: Path) -> None:
    """When the site is unreachable the worker writes to Redis itself; with a
    Socket.IO message queue, the snippet's room still gets ``highlight``."""
    env = stack_env(redis_url, free_port(), SOCKETIO_MESSAGE_QUEUE=redis_url)
    web = start_web(env, log_dir, name="web-mq")
    try:
        job_id = new_id()
        snippets = SnippetStore(redis_client)
        snippet = snippets.create(PYTHON, "python", job_id)
        JobStore(redis_client).create(job_id, kind=HIGHLIGHT_KIND,
                                      args=json.dumps({"snippet": snippet.snippet_id}))
        rec = subscribe_url(env["SITE_URL"], snippet.snippet_id)
        try:
            run_highlight(snippet.snippet_id, snippets, lambda *args, **kwargs: None)
            DirectStore(Config(environ=env))(
                ProgressUpdate(job_id=job_id, progress=100, state="succeeded", seq=1))
            rec.wait_for(got(UPDATE_PROGRESS, snippetId=snippet.snippet_id, state="succeeded"),
                         timeout=10, what="the fallback's update via the message queue")
        finally:
            rec.close()
    finally:
        web.stop()
    stored = snippets.get(snippet.snippet_id)
    assert stored is not None
    assert rec.payloads(HIGHLIGHT) == [stored.highlight_payload()]
