"""Fuzzing the real running site (gunicorn + eventlet, Redis, worker) from its own
OpenAPI spec with schemathesis: no 5xx, every answer as documented, and every
operation reaches its working code at least once (a 2xx).

Random UUIDs only ever find 404s, so about half of the examples put a real id
in: a job that can be cancelled, a job that can be retried, a snippet that
exists, a job to report progress for with the shared or the per-job token. The
stack runs with ``RATE_LIMIT=0`` (the limits have their own tests) and slow
demo jobs, so that jobs created here stay queued while the run lasts.

The spec is built at collection time by the function the site serves it with
(``website/http/openapi.json`` plus the snippet languages of the installed
Pygments); a test checks that the running site serves exactly that. Runs are
derandomized, so a failure reproduces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rq.job import Job, JobStatus
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from shared.protocol import CALLBACK_MAX_BYTES, new_id
from shared.rqconf import SERIALIZER
from shared.signing import sign_job_token
from shared.store import JobStore
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import TEST_SECRET_KEY, TEST_WORKER_TOKEN, auth, start_job, wait_until
from website.http.openapi import OPENAPI_PATH, openapi_spec

EXAMPLES = 40  # per operation; keeps the module around a minute
OPS_TOKEN = "fuzz-ops-token"

schema = schemathesis.openapi.from_dict(openapi_spec())
OPERATIONS = [result.ok() for result in schema.get_all_operations()]


@pytest.fixture(scope="module")
def stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real stack, without rate limits, with demo jobs slow enough to stay queued."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("fuzz-redis"), RATE_LIMIT="0",
                          DEMO_STEP_DELAY="2", OPS_TOKEN=OPS_TOKEN)
    yield running
    stop_stack(running)


class RealIds:
    """Ids of real jobs and snippets in the state each operation needs."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.redis = redis.Redis.from_url(stack.redis.url)
        self.store = JobStore(redis.Redis.from_url(stack.redis.url, decode_responses=True))
        self.job = start_job(stack.url)
        resp = requests.post(stack.url + "/api/snippets", json={"source": "print(1)\n"},
                             timeout=5)
        assert resp.status_code == 202, resp.text
        self.snippet = str(resp.json()["id"])

    def stored_job(self) -> str:
        """A fresh queued job in the store that no worker picks up (progress reports)."""
        jid = new_id()
        self.store.create(jid, kind="fuzz")
        return jid

    def cancellable_job(self) -> str:
        """A job queued through the API (the slow jobs ahead keep it queued)."""
        return start_job(self.stack.url)

    def retryable_job(self) -> str:
        """A job cancelled through the API whose RQ entry has stopped."""
        jid = start_job(self.stack.url)
        resp = requests.post(f"{self.stack.url}/api/jobs/{jid}/cancel", timeout=5,
                             headers=auth(OPS_TOKEN))
        assert resp.status_code == 200, resp.text
        wait_until(lambda: Job.fetch(jid, connection=self.redis, serializer=SERIALIZER).get_status()
                   not in (JobStatus.QUEUED, JobStatus.STARTED), what=f"RQ to stop {jid}")
        return jid

    def batch(self) -> str:
        """A fresh small batch of (slow, so still queued) demo jobs."""
        resp = requests.post(f"{self.stack.url}/api/batches", timeout=10,
                             json={"kind": "demo", "items": [{}, {}]})
        assert resp.status_code == 202, resp.text
        return str(resp.json()["batchId"])

    def for_path(self, operation: str) -> str:
        """A real id for the path of ``operation``."""
        if "{batch_id}" in operation:
            return self.batch()
        if operation.endswith("/cancel"):
            return self.cancellable_job()
        if operation.endswith("/retry"):
            return self.retryable_job()
        if "{snippet_id}" in operation:
            return self.snippet
        if "{schedule_id}" in operation:
            return self.schedule()
        if "{key_id}" in operation:
            return self.api_key()
        if "{name}" in operation:  # pause/resume a kind nothing else here starts
            return "csv_import"
        return self.job

    def api_key(self) -> str:
        """A fresh API key's id (created by the operator)."""
        resp = requests.post(f"{self.stack.url}/api/keys", timeout=5, json={"name": "fuzz"},
                             headers=auth(OPS_TOKEN))
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    def schedule(self) -> str:
        """A fresh recurring schedule (declared through the API)."""
        resp = requests.post(f"{self.stack.url}/api/schedules", timeout=5,
                             json={"cron": "0 0 1 1 *", "kind": "demo"}, headers=auth(OPS_TOKEN))
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])


@pytest.fixture(scope="module")
def real_ids(stack: Stack) -> RealIds:
    """Real ids on the fuzzed stack."""
    return RealIds(stack)


def strategy(operation: Any) -> st.SearchStrategy[Any]:
    """Valid and, where the operation has inputs, invalid cases."""
    cases = operation.as_strategy(GenerationMode.POSITIVE)
    if operation.path_parameters or operation.body:
        cases = st.one_of(cases, operation.as_strategy(GenerationMode.NEGATIVE))
    return cases


def headers_for(path: str, job_id: str | None, token: str) -> dict[str, str]:
    """The bearer token ``token`` names: the shared one, the job's own, or the operator's."""
    if (path in ("/metrics", "/api/jobs")
            or path.startswith(("/api/schedules", "/api/keys", "/api/kinds/", "/api/ops/"))
            or path.endswith(("/cancel", "/retry"))):
        return auth(OPS_TOKEN) if token != "none" else {}
    if path == "/api/progress" and token == "job" and job_id:
        return auth(sign_job_token(TEST_SECRET_KEY, job_id))
    if path.startswith("/api/workers/"):
        return auth(TEST_WORKER_TOKEN) if token != "none" else auth()
    return auth()


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_api_answers_as_documented(operation: Any, stack: Stack, real_ids: RealIds) -> None:
    statuses: list[int] = []
    path = operation.path

    @given(case=strategy(operation), real=st.booleans(),
           token=st.sampled_from(["shared", "job", "none"]))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any, real: bool, token: str) -> None:
        job_id = None
        if real and case.path_parameters:
            name = next(iter(case.path_parameters))
            case.path_parameters[name] = real_ids.for_path(path)
        if real and path == "/api/progress" and isinstance(case.body, dict):
            job_id = case.body["jobId"] = real_ids.stored_job()
        if (path == "/api/schedules" and real and isinstance(case.body, dict)
                and (case.meta is None or case.meta.generation.mode.is_positive)):
            case.body.update(cron="*/5 * * * *", kind="demo", args={})  # a cron that parses
        if (path == "/api/batches" and real and isinstance(case.body, dict)
                and (case.meta is None or case.meta.generation.mode.is_positive)):
            case.body.update(kind="demo", items=[{}], onComplete=None, after=[])  # real kind and args
        if (path == "/api/jobs" and isinstance(case.body, dict) and "after" in case.body
                and (case.meta is None or case.meta.generation.mode.is_positive)):
            case.body["after"] = [real_ids.job]  # ids of stored jobs, which a schema cannot say
        if path == "/api/workers/claim" and isinstance(case.body, dict):
            wait = case.body.get("wait")
            if isinstance(wait, (int, float)) and not isinstance(wait, bool) and 0 < wait <= 30:
                case.body["wait"] = min(wait, 0.2)  # still valid; no 30 s waits
            if real and (case.meta is None or case.meta.generation.mode.is_positive):
                case.body.update(kinds=["external"], worker="fuzz", wait=0)
        # The callback has one rule OpenAPI 3.0 cannot state (current <= total), so
        # a "schema-valid" report may rightly get 400 there, and a claim names kinds
        # that must be this site's external kinds, and a batch's items must be its
        # kind's arguments, and a key's name must be printable text, and a kind to pause
        # must be one of this site's; every other check applies.
        excluded = ([positive_data_acceptance]
                    if path in ("/api/progress", "/api/workers/claim", "/api/schedules",
                                "/api/batches", "/api/keys") or path.startswith("/api/kinds/")
                    else [])
        response = case.call_and_validate(base_url=stack.url,
                                          headers=headers_for(path, job_id, token),
                                          excluded_checks=excluded)
        statuses.append(response.status_code)
        if path.startswith("/api/kinds/"):  # a paused kind would hold later operations' jobs
            for kind in requests.get(f"{stack.url}/api/kinds", timeout=5).json()["kinds"]:
                requests.post(f"{stack.url}/api/kinds/{kind['name']}/resume", timeout=5,
                              headers=auth(OPS_TOKEN))

    run()
    assert statuses and max(statuses) < 500, statuses
    assert any(200 <= status < 300 for status in statuses), (
        f"{operation.label} never got a 2xx: {sorted(set(statuses))}")


def test_served_spec_is_the_file_in_the_repo(stack: Stack) -> None:
    served = requests.get(stack.url + "/api/openapi.json", timeout=5).json()
    collected = json.loads(json.dumps(openapi_spec()))
    # the seq bound is "now + 300 s" as of when each process built the spec
    bounds = [spec["components"]["schemas"]["ProgressUpdate"]["properties"]["seq"].pop("maximum")
              for spec in (served, collected)]
    assert bounds[0] >= bounds[1] > 10**15
    assert served == collected
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


def test_body_over_the_limit_is_413_even_when_chunked(stack: Stack, real_ids: RealIds) -> None:
    jid = real_ids.stored_job()
    body = json.dumps({"jobId": jid, "progress": 5, "state": "running",
                       "message": "x" * (CALLBACK_MAX_BYTES + 1000)}).encode()

    def chunks() -> Any:  # a generator body: no Content-Length, chunked encoding
        for start in range(0, len(body), 4096):
            yield body[start:start + 4096]

    resp = requests.post(stack.url + "/api/progress", data=chunks(), timeout=5,
                         headers={**auth(), "Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.json()["error"]
    assert stack.job_state(jid)["progress"] == 0
