"""A kind's flow-control policy: declared by keyword, checked at declaration, listed."""

from __future__ import annotations

from typing import Any

import pytest

from shared.kinds import job_kind
from shared.kinds.policy import EXPONENTIAL, Concurrency, Policy, PolicyError, make_policy

ARGS = {"account", "n"}


def test_the_defaults_are_todays_behaviour() -> None:
    policy = make_policy("k", ARGS)
    assert policy == Policy()
    assert policy.max_attempts == 1 and policy.priority == "normal"
    assert policy.to_json() == {"retries": 0, "backoff": [0.0], "unique": [],
                                "concurrency": None, "priority": "normal",
                                "stallAfter": None, "stallFails": False,
                                "afterFailure": "cancel"}


def test_a_full_declaration() -> None:
    policy = make_policy("sync", ARGS, retries=3, backoff=[5, 30, 120], unique=["account"],
                         concurrency={"limit": 2, "key": "account"}, priority="low",
                         stall_after=300, stall_fails=True, after_failure="run")
    assert policy.max_attempts == 4 and policy.backoff == (5.0, 30.0, 120.0)
    assert policy.concurrency == Concurrency(2, "account") and policy.unique == ("account",)
    assert make_policy("k", ARGS, backoff=EXPONENTIAL).backoff == EXPONENTIAL


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"retries": -1}, "retries"),
    ({"retries": True}, "retries"),
    ({"backoff": []}, "backoff"),
    ({"backoff": "linear"}, "backoff"),
    ({"backoff": [1, -2]}, "backoff"),
    ({"unique": ["nope"]}, "unique names 'nope'"),
    ({"concurrency": {"limit": 0}}, "limit"),
    ({"concurrency": {"limit": 2, "key": "nope"}}, "key 'nope'"),
    ({"concurrency": {"limit": 2, "per": "x"}}, "concurrency must be"),
    ({"priority": "urgent"}, "priority"),
    ({"stall_after": 0}, "stall_after"),
    ({"after_failure": "ignore"}, "after_failure"),
])
def test_a_bad_declaration_is_refused_naming_what(kwargs: dict[str, Any], says: str) -> None:
    with pytest.raises(PolicyError, match=says):
        make_policy("k", ARGS, **kwargs)


@job_kind("policy_probe", title="Probe", retries=2, priority="high",
          args={"type": "object", "properties": {"account": {"type": "string"}}},
          unique=["account"])
def probe(ctx: Any, account: str = "") -> None:
    """A kind declared with a policy."""


def test_job_kind_takes_the_keywords() -> None:
    from shared.kinds import _REGISTRY

    kind = _REGISTRY["policy_probe"]
    assert kind.policy.retries == 2 and kind.policy.priority == "high"
    assert kind.to_json()["policy"]["unique"] == ["account"]
