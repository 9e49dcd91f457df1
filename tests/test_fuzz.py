"""Fuzzing the real running site (gunicorn + eventlet, Redis, worker) from its own
OpenAPI spec with schemathesis: no 5xx, every answer as documented.

The spec is built at collection time by the function the site serves it with
(``website/openapi.json`` plus the snippet languages of the installed Pygments),
because schemathesis' lazy fixture loader does not work with pytest 9; a test
checks that the running site serves exactly that. Runs are derandomized, so a
failure reproduces.
"""

from __future__ import annotations

import json
from typing import Any

import redis
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from shared.protocol import CALLBACK_MAX_BYTES, new_id
from shared.store import JobStore
from tests.conftest import Stack
from tests.support import auth
from website.http.openapi import OPENAPI_PATH, openapi_spec

EXAMPLES = 60  # per operation; keeps the module well under a minute


schema = schemathesis.openapi.from_dict(openapi_spec())


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_api_answers_as_documented(case: Any, stack: Stack) -> None:
    # The callback has one rule OpenAPI 3.0 cannot state (current <= total), and a
    # schedule's cron string has a grammar no pattern states, so a "schema-valid"
    # body may rightly get 400 there; every other check applies.
    excluded = ([positive_data_acceptance]
                if case.operation.path in ("/api/progress", "/api/schedules") else [])
    case.call_and_validate(base_url=stack.url, headers=auth(), excluded_checks=excluded)


def test_served_spec_is_the_file_in_the_repo(stack: Stack) -> None:
    served = requests.get(stack.url + "/api/openapi.json", timeout=5).json()
    assert served == openapi_spec()
    kept = json.loads(OPENAPI_PATH.read_text())  # the file, plus languages and kinds
    languages = served["components"]["schemas"]["SnippetSubmission"]["properties"]["language"]
    assert {"python", "auto", None} <= set(languages.pop("enum"))
    submission = served["components"]["schemas"]["JobSubmission"]
    assert [variant["properties"]["kind"]["enum"] for variant in submission.pop("oneOf")] == [
        ["demo"]]  # csv_import has checks of its own: described in words
    assert served == kept
    schemes = served["components"]["securitySchemes"]
    assert {"sharedToken", "jobToken"} <= set(schemes)
    assert served["paths"]["/api/progress"]["post"]["security"] == [
        {"sharedToken": []}, {"jobToken": []}]


# Random updates, valid and not, for one real job on the real site: whatever
# arrives, the stored state follows the rules and the site never answers 5xx.
update_bodies = st.fixed_dictionaries(
    {"progress": st.one_of(st.integers(-5, 105), st.floats(allow_nan=False, allow_infinity=False),
                           st.text(max_size=3)),
     "state": st.sampled_from(["running", "running", "succeeded", "failed", "cancelled",
                               "queued", "bogus"])},
    optional={"seq": st.one_of(st.integers(-2, 50), st.none()),
              "message": st.one_of(st.text(max_size=600), st.none(), st.integers()),
              "stage": st.text(max_size=100)},
)


def own_job(stack: Stack) -> str:
    """A job of our own that no worker picks up (and no rate limit counts)."""
    jid = new_id()
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    JobStore(client).create(jid, kind="fuzz")
    client.close()
    return jid


def test_random_updates_keep_the_rules_on_the_real_site(stack: Stack) -> None:
    jid = own_job(stack)
    seen: list[dict[str, Any]] = []
    session = requests.Session()

    @given(body=update_bodies)
    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow],
              database=None)
    def send(body: dict[str, Any]) -> None:
        before = stack.job_state(jid)
        resp = session.post(stack.url + "/api/progress", json={"jobId": jid, **body},
                            headers=auth(), timeout=5)
        assert resp.status_code in (204, 400), resp.text
        after = stack.job_state(jid)
        assert after["progress"] >= before["progress"]
        if before["state"] in ("succeeded", "failed", "cancelled"):
            assert after == before
        if resp.status_code == 400:
            assert after == before and resp.json()["error"]
        seen.append(after)

    send()
    assert seen


def test_body_over_16_kb_is_413_even_when_chunked(stack: Stack) -> None:
    jid = own_job(stack)
    body = json.dumps({"jobId": jid, "progress": 5, "state": "running",
                       "message": "x" * (CALLBACK_MAX_BYTES + 1000)}).encode()

    def chunks() -> Any:  # a generator body: no Content-Length, chunked encoding
        for start in range(0, len(body), 4096):
            yield body[start:start + 4096]

    resp = requests.post(stack.url + "/api/progress", data=chunks(), timeout=5,
                         headers={**auth(), "Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.json()["error"]
    assert stack.job_state(jid)["progress"] == 0
