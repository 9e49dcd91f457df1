"""Issue #27, section 6: pause and resume a kind, on real processes (gunicorn, one RQ
worker, an external worker claiming over HTTP).

While a kind is paused its running job finishes, its new and queued jobs wait
(``paused: true``, "paused by an operator" on their page) and external claims skip
it; a resume runs them. Only operators may pause (401 for anyone else, an API key
too); an unknown kind is 404.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import Stack
from tests.queue_flow import (
    OPS,
    claim,
    hold_worker,
    open_gate,
    post,
    queue_stack,
    ran,
    wait_state,
)
from tests.support import csrf_token_in, wait_until


@pytest.fixture(scope="module")
def stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with queue_stack(log_dir, tmp_path_factory.mktemp("pause-redis")) as running:
        yield running


def pause(stack: Stack, kind: str, action: str = "pause", headers: dict[str, str] | None = None
          ) -> requests.Response:
    return requests.post(f"{stack.url}/api/kinds/{kind}/{action}", timeout=10,
                         headers=OPS if headers is None else headers)


def test_only_operators_pause_and_resume(stack: Stack) -> None:
    key = pause(stack, "x", headers={}).status_code
    assert key == 401
    api_key = requests.post(f"{stack.url}/api/keys", headers=OPS, json={"name": "p"},
                            timeout=10).json()["key"]
    for action in ("pause", "resume"):
        for headers in ({}, {"Authorization": f"Bearer {api_key}"},
                        {"Authorization": "Bearer not-the-ops-token"}):
            resp = pause(stack, "quick", action, headers)
            assert resp.status_code == 401, (action, headers, resp.text)
    assert pause(stack, "nosuch").status_code == 404
    assert pause(stack, "bulk").status_code == 404  # the site's own hidden kind
    job = post(stack, "quick", "refusals")  # nothing was paused: it runs
    wait_state(stack, job["id"], "succeeded")


def test_a_paused_kind_waits_and_runs_when_resumed(stack: Stack) -> None:
    gate = hold_worker(stack, "paused")
    queued_before = post(stack, "quick", "paused", 1)  # on RQ's queue before the pause
    assert pause(stack, "quick").json() == {"kind": "quick", "paused": True}
    new = post(stack, "quick", "paused", 2)  # started while paused
    other = post(stack, "bulky", "paused", 3)  # another kind is not paused
    open_gate(stack, "paused")
    wait_state(stack, gate, "succeeded")
    wait_state(stack, other["id"], "succeeded")  # the worker went past the paused ones
    for job in (queued_before, new):
        state = stack.job_state(job["id"])
        assert state["state"] == "queued" and state["paused"] is True, state
        assert state["position"] is None
        page = requests.get(f"{stack.url}/jobs/{job['id']}", timeout=10).text
        assert "Paused by an operator" in page
    assert ran(stack, "paused") == ["gate:0", "bulky:3"]
    resumed = pause(stack, "quick", "resume").json()
    assert resumed == {"kind": "quick", "paused": False, "resumed": 2}
    for job in (queued_before, new):
        wait_state(stack, job["id"], "succeeded")
    assert ran(stack, "paused") == ["gate:0", "bulky:3", "quick:1", "quick:2"]


def test_claims_skip_a_paused_external_kind(stack: Stack) -> None:
    resp = requests.post(f"{stack.url}/api/jobs", timeout=10, json={"kind": "pager", "args": {}})
    job_id = resp.json()["id"]
    assert pause(stack, "pager").status_code == 200
    assert claim(stack, ["pager"]).status_code == 204
    state = stack.job_state(job_id)
    assert state["state"] == "queued" and state["paused"] is True
    assert pause(stack, "pager", "resume").status_code == 200
    got = claim(stack, ["pager"])
    assert got.status_code == 200 and got.json()["jobId"] == job_id


def test_a_waiting_claim_gets_the_job_when_its_kind_is_resumed(stack: Stack) -> None:
    assert pause(stack, "pager").status_code == 200
    job_id = requests.post(f"{stack.url}/api/jobs", timeout=10,
                           json={"kind": "pager", "args": {}}).json()["id"]
    import threading
    answers: list[requests.Response] = []
    waiting = threading.Thread(target=lambda: answers.append(claim(stack, ["pager"], wait=10)))
    waiting.start()
    try:
        assert pause(stack, "pager", "resume").status_code == 200
    finally:
        waiting.join(20)
    assert answers and answers[0].status_code == 200 and answers[0].json()["jobId"] == job_id


def test_operators_pause_from_the_dashboard(stack: Stack) -> None:
    session = requests.Session()
    session.auth = ("ops", OPS["Authorization"].removeprefix("Bearer "))
    page = session.get(f"{stack.url}/dashboard", timeout=10)
    assert page.status_code == 200 and 'id="kinds"' in page.text
    assert re.search(r'data-kind="quick" data-paused="0"', page.text)
    token = csrf_token_in(page.text)
    url = f"{stack.url}/dashboard/kinds/quick/pause"
    assert session.post(url, data={}, timeout=10, allow_redirects=False).status_code == 400
    done = session.post(url, data={"csrf_token": token}, timeout=10, allow_redirects=False)
    assert done.status_code == 303 and done.headers["Location"].endswith("#kinds")
    page = session.get(f"{stack.url}/dashboard", timeout=10).text
    assert re.search(r'data-kind="quick" data-paused="1"', page)
    stranger = requests.Session()  # a form with its own valid CSRF token, no operator token
    their_token = csrf_token_in(stranger.get(f"{stack.url}/", timeout=10).text)
    assert stranger.post(url.replace("pause", "resume"), data={"csrf_token": their_token},
                         timeout=10, allow_redirects=False).status_code == 401
    assert stack.job_state(post(stack, "quick", "dashboard")["id"])["paused"] is True
    done = session.post(url.replace("pause", "resume"), data={"csrf_token": token},
                        timeout=10, allow_redirects=False)
    assert done.status_code == 303
    job = post(stack, "quick", "dashboard", 1)
    wait_until(lambda: stack.job_state(job["id"])["state"] == "succeeded", timeout=20,
               what="the resumed kind's job to run")
