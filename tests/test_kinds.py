"""Job kinds: declared in one module, listed, checked, started and run for real."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue

from shared import keys
from shared.kinds import KindError, job_kind, load_kinds
from shared.kinds.validate import check_args
from shared.rqconf import SERIALIZER
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import EventRecorder, csrf_token_in, final_state_received, wait_until


def stored_nothing(app: Flask) -> bool:
    """No job stored, none enqueued."""
    conn = redis.Redis.from_url(app.config["REDIS_URL"])
    return (conn.zcard(keys.RECENT_JOBS) == 0
            and Queue(app.config["QUEUE_NAME"], connection=conn, serializer=SERIALIZER).count == 0)


# -- declaring kinds ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Bad", "1x", "", "a" * 41, "has-dash"])
def test_kind_names_are_checked(name: str) -> None:
    with pytest.raises(KindError):
        job_kind(name, title="x")


def test_argument_schemas_are_checked() -> None:
    with pytest.raises(KindError):
        job_kind("bad_schema", title="x", args={"type": "object", "properties": 3})
    with pytest.raises(KindError):
        job_kind("not_object", title="x", args={"type": "string"})
    with pytest.raises(KindError):
        job_kind("bad_result", title="x", result="html")


def test_a_kind_is_a_module_level_function() -> None:
    def inner(ctx: Any) -> None:
        return None

    with pytest.raises(KindError):
        job_kind("inner_one", title="x")(inner)


def test_load_kinds_lists_the_kinds_of_the_named_modules() -> None:
    found = load_kinds(["shared.kinds.demo", "tests.kinds_example"])
    assert set(found) == {"demo", "count_words", "chatty"}
    assert found["count_words"].function == "tests.kinds_example.count_words"
    assert "count_words" not in load_kinds(["shared.kinds.demo"])


def test_check_args_names_each_bad_field() -> None:
    kind = load_kinds(["tests.kinds_example"])["count_words"]
    assert check_args(kind, {"text": "hi"}) == {}
    errors = check_args(kind, {"shout": "yes", "extra": 1})
    assert set(errors) == {"text", "shout", "extra"}
    assert errors["text"] == "is required"


# -- the site: listing, checking, starting ----------------------------------------------

def test_kinds_are_listed_with_their_schemas(client: FlaskClient) -> None:
    body = client.get("/api/kinds").get_json()
    kinds = {k["name"]: k for k in body["kinds"]}
    assert {"demo", "csv_import"} <= set(kinds)
    assert kinds["csv_import"]["args"]["required"] == ["columns", "file"]
    assert kinds["csv_import"]["result"] == "download"


def test_unknown_kind_is_400_and_nothing_is_stored(app: Flask, client: FlaskClient) -> None:
    resp = client.post("/api/jobs", json={"kind": "nope", "args": {}})
    assert resp.status_code == 400
    assert resp.get_json()["fields"] == {"kind": "is not a kind of this site"}
    assert stored_nothing(app)


@pytest.mark.parametrize("args, bad", [
    ({"steps": 0}, {"steps"}),
    ({"steps": "ten"}, {"steps"}),
    ({"steps": 5, "color": "red"}, {"color"}),
])
def test_bad_arguments_are_400_naming_each_field(app: Flask, client: FlaskClient,
                                                 args: dict[str, Any], bad: set[str]) -> None:
    resp = client.post("/api/jobs", json={"kind": "demo", "args": args})
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert set(resp.get_json()["fields"]) == bad
    assert stored_nothing(app)


@pytest.mark.parametrize("body", [{"kind": "demo", "args": [1]}, [1, 2], "x", {"kind": 5}])
def test_malformed_submissions_are_400(app: Flask, client: FlaskClient, body: Any) -> None:
    resp = client.post("/api/jobs", json=body)
    assert resp.status_code == 400 and "error" in resp.get_json()
    assert stored_nothing(app)


def test_a_kind_with_arguments_is_enqueued_with_them(app: Flask, client: FlaskClient) -> None:
    resp = client.post("/api/jobs", json={"kind": "demo", "args": {"steps": 3}})
    assert resp.status_code == 202
    job_id = resp.get_json()["id"]
    rq_job = Queue(app.config["QUEUE_NAME"], connection=redis.Redis.from_url(app.config["REDIS_URL"]),
                   serializer=SERIALIZER).fetch_job(job_id)
    assert rq_job is not None and rq_job.kwargs["kind_args"] == {"steps": 3}


def test_the_home_page_has_a_form_per_kind(client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)
    assert 'name="kind" value="demo"' in html and 'name="kind" value="csv_import"' in html
    assert 'type="file" id="f-csv_import-file"' in html
    assert 'enctype="multipart/form-data"' in html
    forms = re.findall(r'name="kind" value="([a-z_]+)"', html)
    assert forms[0] == "demo", forms  # the README sends a newcomer to "Start a new job"
    assert forms[1:] == sorted(forms[1:]) and "csv_import" in forms


def test_form_errors_are_shown_next_to_the_field(app: Flask, client: FlaskClient) -> None:
    token = csrf_token_in(client.get("/").data)
    resp = client.post("/jobs", data={"csrf_token": token, "kind": "demo", "steps": "500"})
    assert resp.status_code == 400
    html = resp.get_data(as_text=True)
    assert 'id="f-demo-steps"' in html and 'aria-invalid="true"' in html
    assert 'id="f-demo-steps-error">Steps ' in html
    assert 'value="500"' in html  # what the user typed stays
    assert stored_nothing(app)


def csv_form(client: FlaskClient, data: bytes, columns: str = "name, email:email") -> Any:
    token = csrf_token_in(client.get("/").data)
    return client.post("/jobs", content_type="multipart/form-data", data={
        "csrf_token": token, "kind": "csv_import", "columns": columns,
        "file": (io.BytesIO(data), "people.csv")})


@pytest.mark.parametrize("data, status, text", [
    ("name,email\nAnn,ann@example.org\n".encode("utf-16"), 400, "UTF-8"),
    (b"\n\nname,email\n", 400, "no header"),
    (b"name,email\x00\n", 400, "not CSV"),
    (b"name,email\n" + b"a,b@c.de\n" * 600_000, 413, "over 5 MB"),
])
def test_bad_uploads_are_refused_clearly(app: Flask, client: FlaskClient, data: bytes,
                                         status: int, text: str) -> None:
    resp = csv_form(client, data)
    assert resp.status_code == status, resp.get_data(as_text=True)[:500]
    assert text in resp.get_data(as_text=True)
    assert stored_nothing(app)


def test_bad_columns_are_400(app: Flask, client: FlaskClient) -> None:
    resp = csv_form(client, b"name,email\n", columns="name:colour")
    assert resp.status_code == 400 and "type must be one of" in resp.get_data(as_text=True)
    assert stored_nothing(app)


# -- for real: a kind from a test module, and the CSV import, on the real worker --------

@pytest.fixture(scope="module")
def kind_stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(log_dir, tmp_path_factory.mktemp("kinds-redis"),
                          JOB_KINDS="tests.kinds_example", RATE_LIMIT="0")
    yield running
    stop_stack(running)


def test_a_kind_declared_in_a_test_module_runs_end_to_end(kind_stack: Stack) -> None:
    text = "one two\nthree\n<b>four</b> five six"
    resp = requests.post(kind_stack.url + "/api/jobs", timeout=5, json={
        "kind": "count_words", "args": {"text": text, "shout": True}})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    rec = EventRecorder(kind_stack.url, job_id)
    try:
        rec.wait_for(final_state_received(), timeout=30, what="the final state")
    finally:
        rec.close()
    final = rec.payloads("updateProgress")[-1]
    assert final["state"] == "succeeded" and final["result"] == {"lines": 3, "words": 6}
    assert (final["current"], final["total"]) == (3, 3)
    log = requests.get(f"{kind_stack.url}/api/jobs/{job_id}/log", timeout=5).json()
    assert [line["text"] for line in log["lines"]] == [
        "line 1: 2 words!", "line 2: 1 words!", "line 3: 3 words!"]


def test_csv_import_checks_rows_and_gives_the_cleaned_file(kind_stack: Stack) -> None:
    rows = ["name,email,age", "Ann,ann@example.org,31", "Bob,not-an-email,40",
            "<script>x</script>,c@example.org,x", "Dee,dee@example.org,22", "short"]
    data = ("\n".join(rows) + "\n").encode()
    resp = requests.post(kind_stack.url + "/api/jobs", timeout=10, data={
        "kind": "csv_import", "columns": "name, email:email, age:integer"},
        files={"file": ("people.csv", data, "text/csv")})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    wait_until(lambda: kind_stack.job_state(job_id)["state"] == "succeeded", timeout=30,
               what="the import to finish")
    state = kind_stack.job_state(job_id)
    assert state["result"] == {"rows": 5, "valid": 2, "rejected": 3, "file": "cleaned.csv"}
    assert (state["current"], state["total"]) == (5, 5)
    log = [line["text"] for line in requests.get(
        f"{kind_stack.url}/api/jobs/{job_id}/log", timeout=5).json()["lines"]]
    assert log[:3] == ["line 3: email is not an email address: 'not-an-email'",
                       "line 4: age is not a whole number: 'x'",
                       "line 6: has 1 fields, the header has 3"]
    cleaned = requests.get(f"{kind_stack.url}/jobs/{job_id}/files/cleaned.csv", timeout=5)
    assert cleaned.status_code == 200
    assert cleaned.headers["Content-Disposition"] == 'attachment; filename="cleaned.csv"'
    assert cleaned.text == "name,email,age\nAnn,ann@example.org,31\nDee,dee@example.org,22\n"
    missing = requests.get(f"{kind_stack.url}/jobs/{job_id}/files/other.csv", timeout=5)
    assert missing.status_code == 404
