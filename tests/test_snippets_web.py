"""The snippet pages and JSON API in process, on a real Redis (no worker needed).

These cover what the site does on its own: validation (nothing stored on a
refusal), what it stores and enqueues, escaping on the page, polling before a
result exists, and the style sheet. The worker's part is in test_snippets_stack.
"""

from __future__ import annotations

import json
import re

import pytest
import redis
from flask.testing import FlaskClient
from rq import Queue

from shared import keys
from shared.kinds.highlight import run_highlight
from shared.kinds.highlight.snippets import (
    HIGHLIGHT_KIND,
    SOURCE_MAX_BYTES,
    SnippetStore,
    snippet_key,
)
from shared.protocol import RUN_KIND_JOB, new_id
from shared.rqconf import SERIALIZER

HOSTILE = "<script>alert(1)</script>"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def form(client: FlaskClient, **fields: str) -> dict[str, str]:
    """The form fields, plus the page's CSRF token when the site issues one."""
    match = CSRF_FIELD.search(client.get("/snippets").get_data(as_text=True))
    return {**fields, "csrf_token": match.group(1)} if match else fields


def nothing_stored(redis_client: redis.Redis) -> bool:
    """No snippet, no job, nothing in the recent index or the RQ queue."""
    return (not redis_client.keys(f"{keys.PREFIX}:*")
            and not redis_client.keys("rq:job:*")
            and not redis_client.llen("rq:queue:jobcast"))


def test_form_page_lists_languages_and_carries_csrf_slot(client: FlaskClient) -> None:
    resp = client.get("/snippets")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert '<option value="auto" selected>auto-detect</option>' in page
    assert '<option value="python">Python</option>' in page
    assert '<form method="post" action="/snippets">' in page
    assert "No snippets yet." in page
    assert '<a href="/snippets">Snippets</a>' in page  # nav link
    assert "<script>" not in page  # no inline script


def test_post_form_stores_snippet_enqueues_job_and_redirects(
        client: FlaskClient, redis_client: redis.Redis) -> None:
    resp = client.post("/snippets", data=form(client, source="x = 1\r\n", language="python"))
    assert resp.status_code == 303
    snippet_id = resp.headers["Location"].rsplit("/", 1)[1]
    snippet = SnippetStore(redis_client).get(snippet_id)
    assert snippet is not None
    assert (snippet.source, snippet.language, snippet.highlighted) == ("x = 1\n", "python", False)
    job = redis_client.hgetall(keys.job_key(snippet.job_id))
    assert job["kind"] == HIGHLIGHT_KIND and json.loads(job["args"]) == {"snippet": snippet_id}
    assert job["state"] == "queued" and job["page"] == f"/snippets/{snippet_id}"
    raw = redis.Redis.from_url(client.application.config["REDIS_URL"])
    rq_job = Queue("jobcast", connection=raw, serializer=SERIALIZER).fetch_job(snippet.job_id)
    assert rq_job is not None and rq_job.func_name == RUN_KIND_JOB
    assert rq_job.kwargs["kind_name"] == HIGHLIGHT_KIND and rq_job.kwargs["token"]
    assert rq_job.kwargs["kind_args"] == {"snippet": snippet_id}
    assert rq_job.timeout == client.application.config["JOB_TIMEOUT"]
    assert not nothing_stored(redis_client)  # the refusal tests' check does see a snippet
    # the recent list shows it, with its state
    listing = client.get("/snippets").get_data(as_text=True)
    assert f'data-snippet-id="{snippet_id}"' in listing and '<td data-label="State">queued</td>' in listing


def test_page_shows_the_escaped_source_until_highlighted(client: FlaskClient) -> None:
    resp = client.post("/snippets", data=form(client, source=HOSTILE, language="auto"))
    page = client.get(resp.headers["Location"])
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert HOSTILE not in text
    assert '<noscript><meta http-equiv="refresh" content="2"></noscript>' in text
    assert 'src="/static/js/snippet.js"' in text
    assert "/highlighted" in text  # the no-JS link to the polling endpoint


@pytest.mark.parametrize("data,status,message", [
    ({"source": "", "language": "python"}, 400, "The source is empty"),
    ({"source": "   \n", "language": "auto"}, 400, "The source is empty"),
    ({"language": "python"}, 400, "The source must be text"),
    ({"source": "x = 1", "language": "klingon"}, 400, "Unknown language &#39;klingon&#39;"),
    ({"source": "x" * (SOURCE_MAX_BYTES + 1), "language": "text"}, 413, "at most 100 KB"),
    ({"source": "x" * (600 * 1024), "language": "text"}, 413, "at most 100 KB"),
])
def test_form_refusals_are_clear_and_store_nothing(
        client: FlaskClient, redis_client: redis.Redis, data: dict[str, str], status: int,
        message: str) -> None:
    resp = client.post("/snippets", data=form(client, **data))
    assert resp.status_code == status
    text = resp.get_data(as_text=True)
    assert 'role="alert"' in text and message in text
    assert resp.mimetype == "text/html"
    assert nothing_stored(redis_client)


def test_form_refusal_keeps_the_pasted_source_escaped(client: FlaskClient) -> None:
    resp = client.post("/snippets", data=form(client, source=HOSTILE, language="nope"))
    assert resp.status_code == 400
    text = resp.get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;</textarea>" in text


@pytest.mark.parametrize("body,status,message", [
    ({"source": ""}, 400, "The source is empty"),
    ({"source": "x", "language": "klingon"}, 400, "Unknown language"),
    ({"source": 12}, 400, "The source must be text"),
    ({"source": "é" * (SOURCE_MAX_BYTES // 2 + 1)}, 413, "at most 100 KB"),
    (["not", "an", "object"], 400, "JSON object"),
])
def test_api_refusals(client: FlaskClient, redis_client: redis.Redis, body: object, status: int,
                      message: str) -> None:
    resp = client.post("/api/snippets", json=body)
    assert resp.status_code == status
    assert message in resp.get_json()["error"]
    assert nothing_stored(redis_client)


def test_api_refuses_broken_json_and_huge_bodies(client: FlaskClient,
                                                 redis_client: redis.Redis) -> None:
    resp = client.post("/api/snippets", data="{nope", content_type="application/json")
    assert resp.status_code == 400 and "JSON object" in resp.get_json()["error"]
    huge = '{"source": "' + "x" * (600 * 1024) + '"}'
    resp = client.post("/api/snippets", data=huge, content_type="application/json")
    assert resp.status_code == 413 and "100 KB" in resp.get_json()["error"]
    assert nothing_stored(redis_client)


def test_api_create_then_read(client: FlaskClient) -> None:
    resp = client.post("/api/snippets", json={"source": "SELECT 1;", "language": "sql"})
    assert resp.status_code == 202
    body = resp.get_json()
    assert body["state"] == "queued" and body["highlighted"] is False and body["html"] is None
    assert resp.headers["Location"] == f"/api/snippets/{body['id']}" == body["statusUrl"]
    assert body["url"] == f"/snippets/{body['id']}"
    got = client.get(body["statusUrl"]).get_json()
    assert got["source"] == "SELECT 1;" and got["language"] == "sql"
    assert got["job"]["state"] == "queued"
    # a public snippet never reveals its job's id (who holds it could read the job)
    assert "jobId" not in got and "jobId" not in got["job"] and "jobId" not in body


def test_polling_is_204_with_state_before_the_result_and_404_when_unknown(
        client: FlaskClient) -> None:
    body = client.post("/api/snippets", json={"source": "x = 1"}).get_json()
    resp = client.get(body["highlightedUrl"])
    assert resp.status_code == 204 and resp.data == b""
    assert resp.headers["X-Job-State"] == "queued"
    assert resp.headers["Cache-Control"] == "no-store"
    for bad in (new_id(), "not-a-uuid"):
        assert client.get(f"/snippets/{bad}/highlighted").status_code == 404
        assert client.get(f"/snippets/{bad}").status_code == 404
        assert client.get(f"/api/snippets/{bad}").status_code == 404


def test_bad_page_numbers_are_400(client: FlaskClient) -> None:
    for page in ("0", "abc", "-1", "99999"):
        resp = client.get(f"/snippets?page={page}")
        assert resp.status_code == 400, page
    assert client.get("/snippets?page=2").status_code == 200


def test_pygments_css_has_light_and_dark_styles(client: FlaskClient) -> None:
    resp = client.get("/snippets/pygments.css")
    assert resp.status_code == 200 and resp.mimetype == "text/css"
    css = resp.get_data(as_text=True)
    assert ".highlight .k " in css
    assert "@media (prefers-color-scheme: dark)" in css


def test_pages_name_the_language_actually_used(client: FlaskClient,
                                               redis_client: redis.Redis) -> None:
    source = "SELECT name, email\nFROM users\nWHERE id = 42\nORDER BY name;\n"
    body = client.post("/api/snippets", json={"source": source, "language": "auto"}).get_json()
    pending = client.get(body["url"]).get_data(as_text=True)
    assert '<span id="language">auto-detect (pending)</span>' in pending

    reports: list[tuple[object, ...]] = []
    job_id = redis_client.hget(snippet_key(body["id"]), "job_id")  # not in public JSON
    assert job_id
    lexer = run_highlight(body["id"], SnippetStore(redis_client),
                          lambda *args, **kwargs: reports.append(args))
    assert lexer == "SQL" and reports
    page = client.get(body["url"]).get_data(as_text=True)
    assert '<span id="language">SQL</span> <span id="language-note">(detected)</span>' in page
    assert "auto-detect" not in page
    listed = client.get("/snippets").get_data(as_text=True)
    row = listed[listed.index(f'data-snippet-id="{body["id"]}"'):]
    assert re.match(r'[^<]*>\s*<td[^>]*>.*?</td>\s*<td data-label="Language">SQL</td>', row, re.S), row[:300]
    polled = client.get(body["highlightedUrl"])
    assert polled.status_code == 200 and polled.headers["X-Lexer"] == "SQL"
    assert client.get(f"/api/snippets/{body['id']}").get_json()["lexer"] == "SQL"
