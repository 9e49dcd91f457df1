"""The callback payload contract, validated in shared/protocol.py."""

from __future__ import annotations

from typing import Any

import pytest

from shared.protocol import (
    MESSAGE_MAX,
    PayloadError,
    ProgressUpdate,
    is_uuid,
    new_id,
    room_for,
)

JOB = "6f1c5a8e-3b7d-4c2a-9e0f-1a2b3c4d5e6f"


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"jobId": JOB, "progress": 40, "state": "running", "message": "hi"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def test_valid_payload_round_trips() -> None:
    update = ProgressUpdate.from_json(body(seq=3, stage="copy"))
    assert update == ProgressUpdate(JOB, 40, "running", "hi", "copy", 3)
    assert ProgressUpdate.from_json(update.to_json()) == update


@pytest.mark.parametrize("changes, reason", [
    ({"progress": "abc"}, "progress"),
    ({"progress": -1}, "progress"),
    ({"progress": 101}, "progress"),
    ({"progress": True}, "progress"),
    ({"progress": float("nan")}, "progress"),
    ({"progress": ...}, "missing"),
    ({"jobId": ...}, "missing"),
    ({"state": ...}, "missing"),
    ({"jobId": "not-a-uuid"}, "jobId"),
    ({"jobId": 12}, "jobId"),
    ({"state": "exploded"}, "state"),
    ({"state": "queued"}, "state"),
    ({"message": 5}, "message"),
    ({"seq": -1}, "seq"),
    ({"seq": "1"}, "seq"),
])
def test_invalid_payloads_are_refused_with_a_reason(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        ProgressUpdate.from_json(body(**changes))


def test_non_object_bodies_are_refused() -> None:
    for value in (None, [], "x", 3):
        with pytest.raises(PayloadError):
            ProgressUpdate.from_json(value)


def test_message_is_capped_and_ids_normalised() -> None:
    update = ProgressUpdate.from_json(body(jobId=JOB.upper(), message="x" * 10_000))
    assert len(update.message) == MESSAGE_MAX
    assert update.job_id == JOB


def test_names_and_ids() -> None:
    assert room_for(JOB) == f"job:{JOB}"
    assert is_uuid(new_id()) and not is_uuid("x" * 36) and not is_uuid(None)
