"""GET /api/jobs and the filtered dashboard, in process on a real Redis."""

from __future__ import annotations

import base64
import re

import pytest
from flask import Flask

from shared.config import Config
from shared.protocol import ProgressUpdate, new_id
from shared.store import JobStore
from tests.support import auth


@pytest.fixture
def ops_app(config: Config) -> Flask:
    config.OPS_TOKEN = "ops-secret"
    app = __import__("website").create_app(config)
    app.config["TESTING"] = True
    return app  # type: ignore[no-any-return]


@pytest.fixture
def store(ops_app: Flask) -> JobStore:
    with ops_app.app_context():
        from website.extensions import core
        return core.store


OPS = auth("ops-secret")


def test_only_operators_list_jobs(ops_app: Flask) -> None:
    client = ops_app.test_client()
    for headers in ({}, auth("wrong"), auth("")):
        resp = client.get("/api/jobs", headers=headers)
        assert resp.status_code == 401 and resp.is_json and "error" in resp.get_json()
    assert client.get("/dashboard?state=failed").status_code == 401
    basic = base64.b64encode(b"ops:ops-secret").decode()
    assert client.get("/api/jobs", headers={"Authorization": f"Basic {basic}"}).status_code == 200
    assert client.get("/api/jobs", headers=OPS).status_code == 200


def test_filters_combine_and_pages_follow_the_cursor(ops_app: Flask, store: JobStore) -> None:
    client = ops_app.test_client()
    ids = [new_id() for _ in range(7)]
    for i, job_id in enumerate(ids):
        store.create(job_id, "demo" if i % 2 == 0 else "csv_import", "alice" if i < 5 else "bob")
    for job_id in ids[:4]:
        store.finish(job_id, "failed", "Disk full" if job_id == ids[2] else "boom")
    body = client.get("/api/jobs?state=failed&kind=demo&owner=alice", headers=OPS).get_json()
    assert [j["jobId"] for j in body["jobs"]] == [ids[2], ids[0]] and body["next"] is None
    assert body["jobs"][0]["owner"] == "alice" and body["jobs"][0]["message"] == "Disk full"
    assert body["filter"] == {"state": "failed", "kind": "demo", "owner": "alice"}
    assert [j["jobId"] for j in
            client.get("/api/jobs?q=disk", headers=OPS).get_json()["jobs"]] == [ids[2]]
    seen, cursor = [], ""
    while True:
        page = client.get(f"/api/jobs?owner=alice&limit=2&cursor={cursor}", headers=OPS).get_json()
        seen += [j["jobId"] for j in page["jobs"]]
        store.apply(ProgressUpdate(ids[4], 10, "running"))  # changes while paging
        if page["next"] is None:
            break
        cursor = page["next"]
    assert seen == ids[:5][::-1]


@pytest.mark.parametrize("query", ["state=sleeping", "cursor=zzz", f"cursor=1.0~{'x' * 36}",
                                   "limit=0", "limit=201", "limit=ten", "q=" + "x" * 101])
def test_bad_queries_are_400(ops_app: Flask, query: str) -> None:
    resp = ops_app.test_client().get(f"/api/jobs?{query}", headers=OPS)
    assert resp.status_code == 400 and resp.is_json


def test_dashboard_filter_is_in_the_url(ops_app: Flask, store: JobStore) -> None:
    client = ops_app.test_client()
    a, b = new_id(), new_id()
    store.create(a, "demo", "alice")
    store.create(b, "csv_import", "bob")
    html = client.get("/dashboard?kind=csv_import", headers=OPS).get_data(as_text=True)
    assert re.findall(r'<tr data-job-id="([^"]+)"', html) == [b]
    assert 'data-filter-kind="csv_import"' in html and "<option selected>csv_import</option>" in html
    html = client.get("/dashboard?owner=alice", headers=OPS).get_data(as_text=True)
    assert re.findall(r'<tr data-job-id="([^"]+)"', html) == [a]
    assert 'value="alice"' in html and 'href="/dashboard">Show all</a>' in html
