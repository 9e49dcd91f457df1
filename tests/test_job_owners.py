"""Every job records who started it: the session's opaque owner id, in process on a real Redis."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared import keys
from shared.config import Config
from tests.support import auth

OPS = auth("ops-secret")


@pytest.fixture
def ops_app(config: Config) -> Flask:
    config.OPS_TOKEN = "ops-secret"
    app = __import__("website").create_app(config)
    app.config["TESTING"] = True
    app.config["WTF_CSRF_ENABLED"] = False  # the form post below stands for a browser's
    return app  # type: ignore[no-any-return]


def _start(client: FlaskClient, **extra: object) -> dict[str, object]:
    resp = client.post("/api/jobs", json={"kind": "demo", "args": {"steps": 1}, **extra})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    return resp.get_json()  # type: ignore[no-any-return]


def _found(client: FlaskClient, query: str) -> set[str]:
    resp = client.get(f"/api/jobs?{query}", headers=OPS)
    assert resp.status_code == 200
    return {job["jobId"] for job in resp.get_json()["jobs"]}


def test_each_session_finds_only_its_own_jobs(ops_app: Flask) -> None:
    alice, bob, ops = ops_app.test_client(), ops_app.test_client(), ops_app.test_client()
    a_jobs = [_start(alice) for _ in range(3)]
    b_jobs = [_start(bob) for _ in range(2)]
    form = alice.post("/jobs", data={"kind": "demo", "steps": "1"})  # a browser's form
    assert form.status_code == 303
    form_job = form.headers["Location"].rsplit("/", 1)[-1]
    batch = alice.post("/api/batches", json={"kind": "demo", "items": [{"steps": 1}] * 2})
    assert batch.status_code == 202
    a_owner, b_owner = a_jobs[0]["owner"], b_jobs[0]["owner"]
    assert isinstance(a_owner, str) and re.fullmatch(r"u-[0-9a-f]{16}", a_owner)
    assert {j["owner"] for j in a_jobs} == {a_owner} == {batch.get_json()["owner"]}
    assert {j["owner"] for j in b_jobs} == {b_owner} and a_owner != b_owner
    with ops_app.app_context():
        from website.extensions import core
        children = set(core.client.zrange(keys.batch_index(batch.get_json()["batchId"]), 0, -1))
    assert len(children) == 2
    assert _found(ops, f"owner={a_owner}") == {str(j["id"]) for j in a_jobs} | {form_job} | children
    assert _found(ops, f"owner={b_owner}") == {str(j["id"]) for j in b_jobs}
    everyone = _found(ops, "limit=200")  # the operator sees both
    assert {str(j["id"]) for j in a_jobs + b_jobs} <= everyone
    html = ops.get(f"/dashboard?owner={b_owner}", headers=OPS).get_data(as_text=True)
    assert set(re.findall(r'<tr data-job-id="([^"]+)"', html)) == {str(j["id"]) for j in b_jobs}
    assert f'href="/dashboard?owner={b_owner}"' in html  # the row shows its owner, as a filter


def test_cookieless_clients_are_owners_apart_and_only_operators_name_one(ops_app: Flask) -> None:
    first = _start(ops_app.test_client(use_cookies=False))
    second = _start(ops_app.test_client(use_cookies=False))
    assert first["owner"] != second["owner"]
    client = ops_app.test_client()
    asked = _start(client, owner="someone-else")  # not an operator: ignored
    assert asked["owner"] != "someone-else" and str(asked["owner"]).startswith("u-")
    named = _start(ops_app.test_client(), owner="nightly-import")
    assert named["owner"] != "nightly-import"
    resp = ops_app.test_client().post("/api/jobs", headers=OPS,
                                      json={"kind": "demo", "owner": "nightly-import"})
    assert resp.status_code == 202 and resp.get_json()["owner"] == "nightly-import"
    ops = ops_app.test_client()
    assert _found(ops, "owner=nightly-import") == {resp.get_json()["id"]}
    assert _found(ops, "owner=someone-else") == set()


def test_a_session_controls_its_older_jobs_by_its_owner_id(ops_app: Flask) -> None:
    """Past the newest jobs its cookie lists, the session still owns what carries its id."""
    alice, bob = ops_app.test_client(), ops_app.test_client()
    old = str(_start(alice)["id"])
    bob_job = str(_start(bob)["id"])
    with alice.session_transaction() as sess:
        sess["jobs"] = []  # as after SESSION_JOBS newer jobs
    assert bob.post(f"/api/jobs/{old}/cancel").status_code == 403  # another owner id
    assert alice.post(f"/api/jobs/{bob_job}/cancel").status_code == 403
    with bob.session_transaction() as sess:
        sess["owner"] = "operator"  # not a session owner id: never matched
        sess["jobs"] = []
    assert bob.post(f"/api/jobs/{bob_job}/cancel").status_code == 403
    resp = alice.post(f"/api/jobs/{old}/cancel")
    assert resp.status_code == 200 and resp.get_json()["state"]["state"] == "cancelled"
