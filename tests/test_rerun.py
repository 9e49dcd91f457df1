"""Run a job again with changes (#28): the kind's form filled with the job's arguments,
the new job linked to the old one, who may, and the operators' Cancel and Retry
buttons (real stack; the private-jobs refusal in an app of its own on real Redis)."""

from __future__ import annotations

import html
import json
import re

import redis
import requests
from flask import Flask

from shared import keys
from shared.config import Config
from shared.protocol import new_id
from shared.store import JobStore
from tests.conftest import Stack
from tests.support import TEST_OPS_TOKEN, auth, csrf_token_in, wait_until
from website import create_app

OPS = auth(TEST_OPS_TOKEN)


def client_of(site: Stack) -> redis.Redis:
    return redis.Redis.from_url(site.redis.url, decode_responses=True)


def start_from_form(site: Stack, session: requests.Session, steps: int) -> str:
    """A demo job started with the home page's form by ``session`` (which owns it)."""
    token = csrf_token_in(session.get(site.url + "/", timeout=5).text)
    resp = session.post(f"{site.url}/jobs", data={"csrf_token": token, "kind": "demo",
                                                   "steps": str(steps)},
                        allow_redirects=False, timeout=5)
    assert resp.status_code == 303, resp.text
    return str(resp.headers["Location"].rsplit("/", 1)[-1])


def rerun(site: Stack, session: requests.Session, job_id: str, fields: dict[str, str],
          **headers: str) -> requests.Response:
    """Open the filled form of ``job_id`` and post it with ``fields`` changed."""
    page = session.get(f"{site.url}/jobs/{job_id}/rerun", headers=headers, timeout=5)
    assert page.status_code == 200, page.text
    data = {"csrf_token": csrf_token_in(page.text), "kind": "demo", **fields}
    return session.post(f"{site.url}/jobs/{job_id}/rerun", data=data, headers=headers,
                        allow_redirects=False, timeout=5)


def new_job_of(resp: requests.Response) -> str:
    assert resp.status_code == 303, resp.text
    return str(resp.headers["Location"].rsplit("/", 1)[-1])


def test_the_owner_runs_a_job_again_with_changes(stack: Stack) -> None:
    owner = requests.Session()
    old = start_from_form(stack, owner, 3)
    page = html.unescape(owner.get(f"{stack.url}/jobs/{old}", timeout=5).text)
    assert f'id="rerun-link" href="/jobs/{old}/rerun"' in page
    form = owner.get(f"{stack.url}/jobs/{old}/rerun", timeout=5).text
    assert re.search(r'name="steps" value="3"', form), "the form is not filled"
    assert f'action="/jobs/{old}/rerun"' in form and "rerun-uploads" not in form
    new = new_job_of(rerun(stack, owner, old, {"steps": "5"}))
    assert new != old
    wait_until(lambda: stack.job_state(new)["state"] == "succeeded", timeout=30,
               what="the rerun to succeed")
    assert stack.job_state(new)["result"] == {"steps": 5}  # the changed argument ran
    client = client_of(stack)
    assert client.hget(keys.job_key(new), "rerun_of") == old
    assert client.lrange(keys.job_reruns_key(old), 0, -1) == [new]
    assert client.pttl(keys.job_reruns_key(old)) > 0  # expires with the old job
    # Each page links to the other; the new job is the session's own (its controls show).
    new_page = html.unescape(owner.get(f"{stack.url}/jobs/{new}", timeout=5).text)
    assert re.search(rf'id="rerun-of">Run again from <a href="/jobs/{old}">', new_page)
    assert 'id="rerun-link"' in new_page
    old_page = html.unescape(owner.get(f"{stack.url}/jobs/{old}", timeout=5).text)
    assert f'<a href="/jobs/{new}" title="{new}">' in old_page


def test_a_bad_value_shows_the_form_again_and_starts_nothing(stack: Stack) -> None:
    owner = requests.Session()
    old = start_from_form(stack, owner, 2)
    stored = client_of(stack).zcard(keys.RECENT_JOBS)
    resp = rerun(stack, owner, old, {"steps": "many"})
    assert resp.status_code == 400
    assert "Steps must be a whole number" in html.unescape(resp.text)
    assert 'name="steps" value="many"' in resp.text  # what was typed stays
    assert client_of(stack).zcard(keys.RECENT_JOBS) == stored
    assert client_of(stack).llen(keys.job_reruns_key(old)) == 0


def test_an_operator_runs_anyones_job_again_from_the_operators_page(stack: Stack) -> None:
    old = requests.post(f"{stack.url}/api/jobs", json={"args": {"steps": 4}},
                        timeout=5).json()["id"]  # an API client's: not the operator's
    detail = html.unescape(requests.get(f"{stack.url}/dashboard/jobs/{old}", headers=OPS,
                                        timeout=5).text)
    assert f'id="rerun-link" href="/dashboard/jobs/{old}/rerun"' in detail
    operator = requests.Session()
    form = operator.get(f"{stack.url}/dashboard/jobs/{old}/rerun", headers=OPS, timeout=5)
    assert form.status_code == 200 and 'name="steps" value="4"' in form.text
    assert f'action="/dashboard/jobs/{old}/rerun"' in form.text
    resp = operator.post(f"{stack.url}/dashboard/jobs/{old}/rerun", headers=OPS, timeout=5,
                         allow_redirects=False,
                         data={"csrf_token": csrf_token_in(form.text), "steps": "2"})
    assert resp.status_code == 303 and resp.headers["Location"].startswith("/dashboard/jobs/")
    new = resp.headers["Location"].rsplit("/", 1)[-1]
    assert client_of(stack).hget(keys.job_key(new), "rerun_of") == old
    new_detail = html.unescape(requests.get(f"{stack.url}/dashboard/jobs/{new}", headers=OPS,
                                            timeout=5).text)
    assert f'<a href="/dashboard/jobs/{old}"><code class="id">{old}</code></a>' in new_detail
    assert '"steps": 2' in new_detail
    old_detail = requests.get(f"{stack.url}/dashboard/jobs/{old}", headers=OPS, timeout=5).text
    assert f'<a href="/dashboard/jobs/{new}" title="{new}">' in old_detail
    # The public form works for an operator too (Bearer or Basic on any route).
    assert requests.get(f"{stack.url}/jobs/{old}/rerun", headers=OPS, timeout=5).ok
    # The API client that owns the old job is not told of the operator's rerun.
    public = requests.get(f"{stack.url}/jobs/{old}", timeout=5).text
    assert new not in public and 'id="rerun-link"' not in public
    # The operators' form is the operators' only: 401, and nothing starts.
    stored = client_of(stack).zcard(keys.RECENT_JOBS)
    for headers in ({}, auth("wrong")):
        assert requests.get(f"{stack.url}/dashboard/jobs/{old}/rerun", headers=headers,
                            timeout=5).status_code == 401
        assert operator.post(f"{stack.url}/dashboard/jobs/{old}/rerun", headers=headers,
                             timeout=5, data={"csrf_token": csrf_token_in(form.text),
                                              "steps": "2"}).status_code == 401
    assert client_of(stack).zcard(keys.RECENT_JOBS) == stored


def test_strangers_may_not_run_a_job_again(stack: Stack) -> None:
    owner, stranger = requests.Session(), requests.Session()
    old = start_from_form(stack, owner, 2)
    new = new_job_of(rerun(stack, owner, old, {"steps": "3"}))
    stored = client_of(stack).zcard(keys.RECENT_JOBS)
    assert stranger.get(f"{stack.url}/jobs/{old}/rerun", timeout=5).status_code == 403
    token = csrf_token_in(stranger.get(stack.url + "/", timeout=5).text)
    refused = stranger.post(f"{stack.url}/jobs/{old}/rerun", timeout=5, allow_redirects=False,
                            data={"csrf_token": token, "kind": "demo", "steps": "7"})
    assert refused.status_code == 403 and "may rerun it" in html.unescape(refused.text)
    assert client_of(stack).zcard(keys.RECENT_JOBS) == stored  # nothing started
    assert client_of(stack).lrange(keys.job_reruns_key(old), 0, -1) == [new]
    # A stranger's view of either page: no link to the form, and no id of the other job.
    for job_id, other in ((old, new), (new, old)):
        page = stranger.get(f"{stack.url}/jobs/{job_id}", timeout=5).text
        assert 'id="rerun-link"' not in page and other not in page
    # Without the CSRF token even the owner is refused.
    assert owner.post(f"{stack.url}/jobs/{old}/rerun", data={"steps": "7"}, timeout=5,
                      allow_redirects=False).status_code == 400
    # Operators: an unknown id, and the site's own (hidden) kinds, are 404.
    assert requests.get(f"{stack.url}/jobs/{new_id()}/rerun", headers=OPS,
                        timeout=5).status_code == 404
    bulk = new_id()
    JobStore(client_of(stack)).create(bulk, "bulk", "operator", args="{}")
    assert requests.get(f"{stack.url}/jobs/{bulk}/rerun", headers=OPS,
                        timeout=5).status_code == 404


def test_an_upload_is_not_filled_in_and_the_form_says_so(stack: Stack) -> None:
    owner = requests.Session()
    token = csrf_token_in(owner.get(stack.url + "/", timeout=5).text)
    resp = owner.post(f"{stack.url}/jobs", allow_redirects=False, timeout=5,
                      data={"csrf_token": token, "kind": "csv_import", "columns": "name, age:integer"},
                      files={"file": ("people.csv", b"name,age\nAda,36\n", "text/csv")})
    old = new_job_of(resp)
    form = html.unescape(owner.get(f"{stack.url}/jobs/{old}/rerun", timeout=5).text)
    assert 'id="rerun-uploads"' in form and "choose CSV file (UTF-8, at most 5 MB) once more" in form
    assert 'name="columns" value="name, age:integer"' in form
    assert "<upload" not in form  # the stored size stands in for nothing on the form
    token = csrf_token_in(form)
    new = new_job_of(owner.post(f"{stack.url}/jobs/{old}/rerun", allow_redirects=False,
                                timeout=5, data={"csrf_token": token, "kind": "csv_import",
                                                 "columns": "name"},
                                files={"file": ("more.csv", b"name\nGrace\n", "text/csv")}))
    assert client_of(stack).hget(keys.job_key(new), "rerun_of") == old


def test_the_operators_page_cancels_and_retries_and_comes_back(stack: Stack) -> None:
    job_id = requests.post(f"{stack.url}/api/jobs", json={"args": {"steps": 1},
                                                           "delaySeconds": 600},
                           timeout=5).json()["id"]
    operator = requests.Session()
    url = f"{stack.url}/dashboard/jobs/{job_id}"
    page = operator.get(url, headers=OPS, timeout=5).text
    assert 'id="detail-cancel"' in page and 'id="detail-retry"' not in page
    token = csrf_token_in(page)
    # Others: 401 (as the page), and nothing changes; no CSRF token: 400.
    for headers in ({}, auth("wrong")):
        assert operator.post(f"{url}/cancel", headers=headers, data={"csrf_token": token},
                             timeout=5).status_code == 401
    assert requests.post(f"{url}/cancel", headers=OPS, timeout=5).status_code == 400
    assert stack.job_state(job_id)["state"] == "scheduled"
    resp = operator.post(f"{url}/cancel", headers=OPS, timeout=5, data={"csrf_token": token},
                         allow_redirects=False)
    assert resp.status_code == 303 and resp.headers["Location"] == f"/dashboard/jobs/{job_id}"
    page = operator.get(url, headers=OPS, timeout=5).text
    assert 'id="detail-state">cancelled' in page
    assert 'id="detail-retry"' in page and 'id="detail-cancel"' not in page
    assert operator.post(f"{url}/cancel", headers=OPS, data={"csrf_token": token},
                         timeout=5).status_code == 409  # ended: as the public buttons
    resp = operator.post(f"{url}/retry", headers=OPS, timeout=5, data={"csrf_token": token},
                         allow_redirects=False)
    assert resp.status_code == 303 and resp.headers["Location"] == f"/dashboard/jobs/{job_id}"
    wait_until(lambda: stack.job_state(job_id)["state"] == "succeeded", timeout=30,
               what="the retried job to succeed")
    assert operator.post(f"{stack.url}/dashboard/jobs/{new_id()}/retry", headers=OPS,
                         data={"csrf_token": token}, timeout=5).status_code == 404


def test_with_private_jobs_a_stranger_gets_the_unknown_ids_404(config: Config) -> None:
    config.JOB_VISIBILITY = "owner"  # type: ignore[attr-defined]
    app: Flask = create_app(config)
    app.config["TESTING"] = True
    owner, stranger = app.test_client(), app.test_client()
    token = csrf_token_in(owner.get("/").data)
    created = owner.post("/jobs", data={"csrf_token": token, "kind": "demo", "steps": "2"})
    old = created.headers["Location"].rsplit("/", 1)[-1]
    assert owner.get(f"/jobs/{old}/rerun").status_code == 200
    unknown = stranger.get(f"/jobs/{new_id()}/rerun")
    refused = stranger.get(f"/jobs/{old}/rerun")
    assert unknown.status_code == refused.status_code == 404
    assert unknown.get_data() == refused.get_data()
    token = csrf_token_in(stranger.get("/").data)
    posted = stranger.post(f"/jobs/{old}/rerun", data={"csrf_token": token, "steps": "3"})
    assert posted.status_code == 404
    client = redis.Redis.from_url(config.REDIS_URL, decode_responses=True)
    assert client.zcard(keys.RECENT_JOBS) == 1 and client.llen(keys.job_reruns_key(old)) == 0


def test_the_form_values_of_a_kind_without_properties_are_its_json() -> None:
    from shared.kinds import BUILTIN_MODULES, load_kinds
    from shared.rerun import form_values

    kinds = load_kinds(BUILTIN_MODULES)
    EXTERNAL, DEMO = kinds["external"], kinds["demo"]  # noqa: N806
    args = {"to": "ops@example.com", "n": [1, 2]}
    assert json.loads(form_values(EXTERNAL, args)["args"]) == args  # the External form's field
    assert form_values(EXTERNAL, {}) == {}  # the form's own default ({})
    assert form_values(DEMO, {"steps": 4, "stray": 1}) == {"steps": 4}
