"""Property tests (hypothesis): payload validation and the store's update rules,
the latter on a real Redis against a plain-Python model of the rules."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.protocol import (
    APPLIED_HEADER,
    MESSAGE_MAX,
    REPORTABLE_STATES,
    STAGE_MAX,
    STATE_HEADER,
    TERMINAL_STATES,
    PayloadError,
    ProgressUpdate,
    is_uuid,
)
from shared.store import JobStore
from tests.conftest import Stack
from tests.support import auth

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12,
)
uuids = st.uuids().map(str)
maybe_bad_ids = st.one_of(uuids, uuids.map(str.upper), st.text(max_size=40), st.integers(),
                          st.none())
bodies = st.fixed_dictionaries(
    {"jobId": maybe_bad_ids,
     "progress": st.one_of(st.integers(-10, 110), st.floats(), st.booleans(), st.text(max_size=4)),
     "state": st.one_of(st.sampled_from([*REPORTABLE_STATES, "queued", "RUNNING"]), json_values)},
    optional={"message": st.one_of(st.text(max_size=700), json_values),
              "stage": st.one_of(st.text(max_size=120), json_values),
              "seq": st.one_of(st.integers(-3, 2**54), json_values),
              "extra": json_values},
)


def check_valid(update: ProgressUpdate) -> None:
    assert is_uuid(update.job_id) and update.job_id == update.job_id.lower()
    assert isinstance(update.progress, int) and 0 <= update.progress <= 100
    assert update.state in REPORTABLE_STATES
    assert len(update.message) <= MESSAGE_MAX and len(update.stage) <= STAGE_MAX
    assert update.seq is None or (isinstance(update.seq, int) and 0 <= update.seq < 2**53)


@given(st.one_of(json_values, bodies))
@settings(max_examples=400, deadline=None)
def test_from_json_accepts_only_the_contract_and_raises_only_payload_error(body: Any) -> None:
    try:
        update = ProgressUpdate.from_json(body)
    except PayloadError as exc:
        assert str(exc)  # always a reason
        return
    check_valid(update)
    assert update == ProgressUpdate.from_json(json.loads(json.dumps(update.to_json())))


def nullable_as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's ``"nullable": true`` as JSON Schema says it (``null`` among the
    types): a JSON Schema validator ignores the OpenAPI keyword."""
    if isinstance(node, list):
        return [nullable_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: nullable_as_json_schema(value) for key, value in node.items()}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def openapi_report_schema() -> Any:
    """The callback body's JSON Schema as the OpenAPI spec publishes it."""
    from jsonschema import Draft202012Validator

    from website.http.openapi import openapi_spec
    spec = nullable_as_json_schema(openapi_spec())
    schema = dict(spec["components"]["schemas"]["ProgressUpdate"], components=spec["components"])
    return Draft202012Validator(schema)


REPORT_SCHEMA = openapi_report_schema()


@given(st.one_of(json_values, bodies))
@example({"jobId": "e3e70682-c209-4cac-629f-6fbed82c07cd", "progress": 0, "state": "running",
          "message": None})  # nullable in the spec (OpenAPI 3.0's keyword)
@settings(max_examples=400, deadline=None)
def test_the_parser_takes_nothing_the_published_schema_refuses(body: Any) -> None:
    """The hand-written parser (docs/scaling.md: 3 µs against 92 µs for jsonschema) and
    the OpenAPI spec agree: every body the parser takes, the schema takes."""
    try:
        ProgressUpdate.from_json(body)
    except PayloadError:
        return
    errors = [e.message for e in REPORT_SCHEMA.iter_errors(body)]
    assert errors == [], f"the parser took {body!r}, the spec refuses it: {errors}"


valid_bodies = st.fixed_dictionaries(
    {"jobId": uuids, "progress": st.one_of(st.integers(0, 100), st.floats(0, 100)),
     "state": st.sampled_from(REPORTABLE_STATES)},
    optional={"message": st.text(max_size=700), "stage": st.text(max_size=100),
              "seq": st.integers(0, 2**53 - 1)},
)


@given(valid_bodies)
@settings(max_examples=200, deadline=None)
def test_every_valid_body_is_accepted(body: dict[str, Any]) -> None:
    update = ProgressUpdate.from_json(body)
    check_valid(update)
    assert update.progress == int(body["progress"])
    assert update.message == body.get("message", "")[:MESSAGE_MAX]


# -- store rules --------------------------------------------------------------------


@dataclass
class Model:
    """The rules of shared/store.py, in plain Python."""

    state: str = "queued"
    progress: int = 0
    message: str = ""
    stage: str = ""
    seq: int | None = None

    def apply(self, u: ProgressUpdate) -> bool:
        if self.state in TERMINAL_STATES:
            return False
        if u.seq is not None and self.seq is not None and u.seq <= self.seq:
            return False
        progress = 100 if u.state == "succeeded" else max(self.progress, u.progress)
        if (u.state, progress, u.message, u.stage) == (self.state, self.progress, self.message,
                                                       self.stage):
            return False
        self.state, self.progress, self.message, self.stage = u.state, progress, u.message, u.stage
        if u.seq is not None:
            self.seq = u.seq
        return True


updates = st.builds(
    lambda progress, state, message, seq: (progress, state, message, seq),
    st.integers(0, 100),
    st.sampled_from(["running"] * 6 + ["succeeded", "failed", "cancelled"]),
    st.sampled_from(["", "a", "b"]),
    st.one_of(st.none(), st.integers(0, 12)),
)


@given(st.lists(updates, min_size=1, max_size=25))
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_store_follows_the_rules(redis_client: redis.Redis, steps: list[tuple[Any, ...]]) -> None:
    store = JobStore(redis_client, ttl=600)
    job_id = str(uuid.uuid4())
    store.create(job_id, kind="prop")
    model = Model()
    shown = 0
    for progress, state, message, seq in steps:
        update = ProgressUpdate(job_id, progress, state, message, seq=seq)
        expected = model.apply(update)
        applied = store.apply(update).state
        assert (applied is not None) == expected, (update, model)
        stored = store.get(job_id)
        assert stored is not None
        assert (stored.state, stored.progress, stored.message) == (
            model.state, model.progress, model.message)
        if applied is not None:  # what the site would emit
            assert applied.progress >= shown
            shown = applied.progress
            assert applied.to_payload() == stored.to_payload()
    redis_client.delete(f"jobcast:job:{job_id}")


# -- the same rules on the real running site -----------------------------------------

site_bodies = st.fixed_dictionaries(
    {"progress": st.one_of(st.integers(-5, 105), st.integers(0, 100),
                           st.floats(allow_nan=False, allow_infinity=False),
                           st.text(max_size=3)),
     "state": st.sampled_from(["running"] * 6 + ["succeeded", "failed", "cancelled",
                                                 "queued", "bogus"]),
     "seq": st.sampled_from([*range(6)] * 3 + [None, -1])},
    optional={"message": st.one_of(st.sampled_from(["", "a", "b"]), st.text(max_size=600),
                                   st.none(), st.integers()),
              "stage": st.one_of(st.sampled_from(["", "x"]), st.text(max_size=100))},
)


def test_random_updates_keep_the_rules_on_the_real_site(stack: Stack) -> None:
    """Sequences of updates, valid and not, each for a fresh job on the real site
    (gunicorn, Redis): every answer and every stored state as the model says."""
    store = JobStore(redis.Redis.from_url(stack.redis.url, decode_responses=True))
    session = requests.Session()
    answers: Counter[str] = Counter()

    @given(st.lists(site_bodies, min_size=1, max_size=12))
    @settings(max_examples=40, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def send(bodies: list[dict[str, Any]]) -> None:
        job_id = str(uuid.uuid4())
        store.create(job_id, kind="prop")
        model = Model()
        for body in bodies:
            body = {"jobId": job_id, **body}
            try:
                expected: bool | None = model.apply(ProgressUpdate.from_json(body))
            except PayloadError:
                expected = None  # invalid: 400, nothing changes
            resp = session.post(stack.url + "/api/progress", json=body, headers=auth(),
                                timeout=5)
            if expected is None:
                assert resp.status_code == 400 and resp.json()["error"], (body, resp.text)
                answers["rejected"] += 1
            else:
                assert resp.status_code == 204, (body, resp.text)
                assert resp.headers[APPLIED_HEADER] == ("1" if expected else "0"), (body, model)
                assert resp.headers[STATE_HEADER] == model.state
                answers["applied" if expected else "dropped"] += 1
            after = stack.job_state(job_id)
            assert (after["state"], after["progress"], after["message"],
                    after.get("stage", "")) == (model.state, model.progress, model.message,
                                                model.stage), (body, model)

    send()
    # Every branch of the rules was reached: applied, dropped and refused updates.
    assert min(answers["applied"], answers["dropped"], answers["rejected"]) > 0, answers
