"""API keys (issue #26, part 6): operators create, list and revoke them; a key owns the
jobs, batches and snippets it starts, may cancel and retry them, and is counted by its
own rate. In process, on a real Redis and RQ queue; the refusals are in
test_attacks_keys.py, the dashboard in a browser in e2e/test_dashboard_keys.py."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from shared import apikeys, keys
from shared.config import Config
from tests.support import TEST_OPS_TOKEN, auth, csrf_token_in
from website import create_app
from website.extensions import socketio

OPS = auth(TEST_OPS_TOKEN)


def make_app(config: Config, **overrides: object) -> Flask:
    """The site with ``overrides`` applied to the (test) config."""
    for name, value in overrides.items():
        setattr(config, name, value)
    app = create_app(config)
    app.config["TESTING"] = True
    return app


def new_key(client: FlaskClient, name: str = "billing", **quota: int) -> dict[str, Any]:
    """Create a key as an operator; the 201's body (with ``key``)."""
    resp = client.post("/api/keys", headers=OPS, json={"name": name, "quota": quota})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()  # type: ignore[no-any-return]


def start(client: FlaskClient, key: str, **body: Any) -> dict[str, Any]:
    resp = client.post("/api/jobs", headers=auth(key), json={"args": {"steps": 1}, **body})
    assert resp.status_code == 202, resp.get_data(as_text=True)
    return resp.get_json()  # type: ignore[no-any-return]


def every_value(client: redis.Redis) -> str:
    """Every key name and value in Redis, as one text (to look for a secret in it)."""
    parts: list[str] = []
    for name in client.scan_iter():
        kind = client.type(name)
        parts.append(str(name))
        if kind == "string":
            parts.append(str(client.get(name)))
        elif kind == "hash":
            parts.append(str(client.hgetall(name)))
        elif kind == "set":
            parts.append(str(client.smembers(name)))
    return "\n".join(parts)


def test_operators_create_list_and_revoke_keys(client: FlaskClient,
                                               redis_client: redis.Redis) -> None:
    resp = client.post("/api/keys", headers=OPS,
                       json={"name": "  billing service ", "quota": {"jobs": 50, "rate": 5,
                                                                     "bytes": None}})
    assert resp.status_code == 201 and resp.headers["Cache-Control"] == "no-store"
    created = resp.get_json()
    key, key_id = created["key"], created["id"]
    assert re.fullmatch(r"jc_[A-Za-z0-9_-]{43}", key) and re.fullmatch(r"[0-9a-f]{12}", key_id)
    assert created["name"] == "billing service" and created["owner"] == f"k-{key_id}"
    assert created["quota"] == {"jobs": 50, "rate": 5} and created["revoked"] is False
    # stored hashed: the key's text is nowhere in Redis, its SHA-256 maps to its id
    digest = hashlib.sha256(key.encode()).hexdigest()
    assert key not in every_value(redis_client)
    assert redis_client.hget(apikeys.KEY_BY_HASH, digest) == key_id
    assert redis_client.hget(apikeys.key_record(key_id), "hash") == digest
    assert apikeys.key_quota(redis_client, key_id) == {"quota_jobs": 50, "rate": 5}
    other = new_key(client, "nightly")
    listed = client.get("/api/keys", headers=OPS).get_json()["keys"]
    assert [k["id"] for k in listed] == [key_id, other["id"]]
    assert all(set(k) == {"id", "name", "owner", "createdAt", "revoked", "revokedAt", "quota"}
               for k in listed)
    assert key not in str(listed) and digest not in str(listed)
    revoked = client.delete(f"/api/keys/{key_id}", headers=OPS)
    assert revoked.status_code == 200 and revoked.get_json()["revoked"] is True
    when = revoked.get_json()["revokedAt"]
    assert redis_client.hget(apikeys.KEY_BY_HASH, digest) is None  # refused from now on
    again = client.delete(f"/api/keys/{key_id}", headers=OPS)  # idempotent
    assert again.status_code == 200 and again.get_json()["revokedAt"] == when
    listed = client.get("/api/keys", headers=OPS).get_json()["keys"]
    assert [(k["name"], k["revoked"]) for k in listed] == [("billing service", True),
                                                          ("nightly", False)]
    for unknown in ("000000000000", "nope", "x" * 300):
        assert client.delete(f"/api/keys/{unknown}", headers=OPS).status_code == 404


@pytest.mark.parametrize(("body", "fields"), [
    ({}, {"name"}),
    ({"name": "   "}, {"name"}),
    ({"name": 5}, {"name"}),
    ({"name": "x" * 65}, {"name"}),
    ({"name": "a\nb"}, {"name"}),
    ({"name": "a", "quota": []}, {"quota"}),
    ({"name": "a", "quota": {"jobs": 0}}, {"quota.jobs"}),
    ({"name": "a", "quota": {"bytes": -1, "rate": 1.5}}, {"quota.bytes", "quota.rate"}),
    ({"name": "a", "quota": {"snippets": True}}, {"quota.snippets"}),
    ({"name": "a", "quota": {"jobs": 2**53}}, {"quota.jobs"}),
    ({"name": "a", "quota": {"priority": 1}}, {"quota.priority"}),
    ({"name": "a", "owner": "ops"}, {"owner"}),
], ids=["no-name", "blank-name", "number-name", "long-name", "control-char", "quota-list",
        "zero", "negative-and-fraction", "boolean", "too-big", "unknown-quota", "unknown-field"])
def test_bad_keys_are_400_naming_the_field(client: FlaskClient, redis_client: redis.Redis,
                                           body: dict[str, Any], fields: set[str]) -> None:
    resp = client.post("/api/keys", headers=OPS, json=body)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert set(resp.get_json()["fields"]) == fields
    assert redis_client.scard(apikeys.KEY_IDS) == 0


@pytest.mark.parametrize("body", ["[]", "{", '"name"', "null"],
                         ids=["list", "broken", "string", "null"])
def test_a_body_that_is_no_object_is_400(client: FlaskClient, body: str) -> None:
    resp = client.post("/api/keys", headers={**OPS, "Content-Type": "application/json"},
                       data=body)
    assert resp.status_code == 400 and "JSON object" in resp.get_json()["error"]


def test_a_key_owns_what_it_starts_and_controls_it(client: FlaskClient,
                                                  redis_client: redis.Redis) -> None:
    created = new_key(client)
    key, owner = created["key"], created["owner"]
    program = client.application.test_client(use_cookies=False)
    job = start(program, key)
    assert job["owner"] == owner
    stored = redis_client.hgetall(keys.job_key(job["id"]))
    assert stored["owner"] == owner and stored["tenant"] == owner  # quotas count against it
    assert program.post(f"/api/jobs/{job['id']}/cancel", headers=auth(key)).status_code == 200
    retried = program.post(f"/api/jobs/{job['id']}/retry", headers=auth(key))
    assert retried.status_code == 202 and retried.get_json()["state"]["state"] == "queued"
    batch = program.post("/api/batches", headers=auth(key),
                         json={"kind": "demo", "items": [{"steps": 1}] * 3})
    assert batch.status_code == 202 and batch.get_json()["owner"] == owner
    children = redis_client.zrange(keys.batch_index(batch.get_json()["batchId"]), 0, -1)
    assert {redis_client.hget(keys.job_key(c), "tenant") for c in children} == {owner}
    assert {redis_client.hget(keys.job_key(c), "owner") for c in children} == {owner}
    cancel = program.post(f"/api/batches/{batch.get_json()['batchId']}/cancel", headers=auth(key))
    assert cancel.status_code == 202
    snippet = program.post("/api/snippets", headers=auth(key), json={"source": "print(1)\n"})
    assert snippet.status_code == 202
    found = client.get(f"/api/jobs?owner={owner}&limit=200", headers=OPS).get_json()["jobs"]
    assert {row["jobId"] for row in found} >= {job["id"], *children}
    assert any(row["kind"] == "highlight" for row in found)  # the snippet's job is the key's
    assert {row["ownerName"] for row in found} == {"billing"}
    assert "Set-Cookie" not in program.post("/api/jobs", headers=auth(key)).headers


def test_an_operator_still_names_the_owner_and_a_session_is_unchanged(
        client: FlaskClient) -> None:
    named = client.post("/api/jobs", headers=OPS, json={"owner": "nightly-import"})
    assert named.status_code == 202 and named.get_json()["owner"] == "nightly-import"
    browser = client.application.test_client()
    mine = browser.post("/api/jobs").get_json()
    assert mine["owner"].startswith("u-")
    assert browser.post(f"/api/jobs/{mine['id']}/cancel").status_code == 200


def test_a_key_reads_its_private_jobs_and_watches_them(config: Config) -> None:
    app = make_app(config, JOB_VISIBILITY="owner")
    ops = app.test_client()
    key = new_key(ops)["key"]
    job_id = start(app.test_client(use_cookies=False), key)["id"]
    program = app.test_client(use_cookies=False)
    assert program.get(f"/api/jobs/{job_id}", headers=auth(key)).status_code == 200
    assert program.get(f"/api/jobs/{job_id}/log", headers=auth(key)).status_code == 200
    assert program.get(f"/api/jobs/{job_id}").status_code == 404
    by_header = socketio.test_client(app, query_string=f"jobId={job_id}", headers=auth(key))
    assert by_header.is_connected()
    assert by_header.get_received()[0]["args"][0]["jobId"] == job_id
    by_auth = socketio.test_client(app, query_string=f"jobId={job_id}",
                                   auth={"controlToken": key})
    assert by_auth.is_connected()
    plain = socketio.test_client(app)
    assert plain.emit("subscribe", {"jobId": job_id}, callback=True)["ok"] is False
    assert plain.emit("subscribe", {"jobId": job_id, "controlToken": key},
                      callback=True) == {"ok": True}


def test_a_key_is_counted_by_its_own_rate(config: Config) -> None:
    app = make_app(config, RATE_LIMIT="3/minute", RATE_LIMIT_GLOBAL="0")
    ops = app.test_client()
    fast = new_key(ops, "fast", rate=5)["key"]
    plain = new_key(ops, "plain")["key"]
    client = app.test_client(use_cookies=False)  # every request from one address
    statuses = [client.post("/api/jobs", headers=auth(fast)).status_code for _ in range(6)]
    assert statuses == [202] * 5 + [429]
    refused = client.post("/api/jobs", headers=auth(fast))
    assert "with this API key" in refused.get_json()["error"] and "at most 5" in refused.get_json()["error"]
    assert int(refused.headers["Retry-After"]) >= 1
    # a key without a rate gets RATE_LIMIT, counted apart from the address
    assert [client.post("/api/jobs", headers=auth(plain)).status_code
            for _ in range(4)] == [202] * 3 + [429]
    assert [client.post("/api/jobs").status_code for _ in range(4)] == [202] * 3 + [429]


def test_a_key_rate_applies_when_rate_limit_is_off(config: Config) -> None:
    app = make_app(config, RATE_LIMIT="0", RATE_LIMIT_GLOBAL="0")
    key = new_key(app.test_client(), "slow", rate=1)["key"]
    client = app.test_client(use_cookies=False)
    assert [client.post("/api/jobs", headers=auth(key)).status_code
            for _ in range(2)] == [202, 429]
    assert [client.post("/api/jobs").status_code for _ in range(5)] == [202] * 5


def test_a_site_token_with_the_key_prefix_is_no_key(config: Config) -> None:
    """An OPS_TOKEN that happens to start like a key still works as the operator's."""
    app = make_app(config, OPS_TOKEN="jc_operator-token-that-looks-like-a-key")
    client = app.test_client()
    resp = client.get("/api/keys", headers=auth("jc_operator-token-that-looks-like-a-key"))
    assert resp.status_code == 200
    assert client.get("/api/keys", headers=auth("jc_something-else")).status_code == 401


def test_the_dashboard_creates_lists_and_revokes_keys(client: FlaskClient,
                                                     redis_client: redis.Redis) -> None:
    page = client.get("/dashboard", headers=OPS)
    html = page.get_data(as_text=True)
    assert 'id="api-keys"' in html and 'id="key-create"' in html
    token = csrf_token_in(html)
    refused = client.post("/dashboard/keys", headers=OPS,
                          data={"csrf_token": token, "name": "", "jobs": "many"})
    assert refused.status_code == 400
    text = refused.get_data(as_text=True)
    assert "name:" in text and "quota.jobs:" in text and redis_client.scard(apikeys.KEY_IDS) == 0
    assert client.post("/dashboard/keys", headers=OPS,
                       data={"name": "no token"}).status_code == 400  # CSRF
    made = client.post("/dashboard/keys", headers=OPS,
                       data={"csrf_token": token, "name": "reports", "jobs": "20", "rate": ""})
    assert made.status_code == 200 and made.headers["Cache-Control"] == "no-store"
    shown = re.search(r'id="new-key"[^>]*value="(jc_[^"]+)"', made.get_data(as_text=True))
    assert shown is not None
    key = shown.group(1)
    key_id = str(redis_client.hget(apikeys.KEY_BY_HASH, hashlib.sha256(key.encode()).hexdigest()))
    assert apikeys.key_quota(redis_client, key_id) == {"quota_jobs": 20}
    job_id = start(client.application.test_client(use_cookies=False), key)["id"]
    html = client.get("/dashboard", headers=OPS).get_data(as_text=True)
    assert key not in html  # shown once only
    assert f'data-key-id="{key_id}"' in html and ">reports</td>" in html
    assert f'value="k-{key_id}" label="reports"' in html  # the owner filter offers its name
    row = re.search(rf'<tr data-job-id="{job_id}".*?</tr>', html, re.S)
    assert row is not None and f'title="k-{key_id}">reports</a>' in row.group(0)
    detail = client.get(f"/dashboard/jobs/{job_id}", headers=OPS).get_data(as_text=True)
    assert f"k-{key_id} (API key “reports”)" in detail
    filtered = client.get(f"/dashboard?owner=k-{key_id}", headers=OPS).get_data(as_text=True)
    assert "key “reports”" in filtered
    revoked = client.post(f"/dashboard/keys/{key_id}/revoke", headers=OPS,
                          data={"csrf_token": token})
    assert revoked.status_code == 303 and revoked.headers["Location"].endswith("#api-keys")
    assert client.post("/api/jobs", headers=auth(key)).status_code == 401
    html = client.get("/dashboard", headers=OPS).get_data(as_text=True)
    assert re.search(rf'data-key-id="{key_id}" data-revoked="1"', html)
    stranger = client.application.test_client()
    theirs = csrf_token_in(stranger.get("/").get_data(as_text=True))  # a valid form, no token
    assert stranger.post("/dashboard/keys", data={"csrf_token": theirs, "name": "x"}
                         ).status_code == 401
    other = new_key(client, "other")
    assert stranger.post(f"/dashboard/keys/{other['id']}/revoke",
                         data={"csrf_token": theirs}).status_code == 401
    assert client.get("/api/keys", headers=OPS).get_json()["keys"][-1]["revoked"] is False
