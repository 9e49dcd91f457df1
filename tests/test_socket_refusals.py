"""Socket.IO connections with bad job ids, against the real site with a real
python-socketio client: refused with a reason, and the server keeps serving."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
import socketio

from tests.conftest import Stack
from tests.support import UNSTORED, EventRecorder, final_state_received

UNKNOWN = UNSTORED


def refusal(stack: Stack, query: str = "", auth: Any = None,
            transport: str = "websocket") -> list[Any]:
    """Connect, expect a refusal; the reasons the client was given."""
    reasons: list[Any] = []
    client = socketio.Client(reconnection=False)
    client.on("connect_error", reasons.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(stack.url + query, auth=auth, transports=[transport], wait_timeout=5)
    client.disconnect()
    return reasons


@pytest.mark.parametrize("job_id, reason", [
    ("nope", "jobId must be a UUID"),
    ("", "jobId must be a UUID"),
    ("' OR 1=1 --", "jobId must be a UUID"),
    ("x" * 1000, "jobId must be a UUID"),
    (UNKNOWN[:-1], "jobId must be a UUID"),
    (UNKNOWN, f"unknown job {UNKNOWN}"),
    (UNKNOWN.upper(), f"unknown job {UNKNOWN}"),
])
def test_bad_job_id_in_query_is_refused_with_reason(stack: Stack, job_id: str,
                                                    reason: str) -> None:
    reasons = refusal(stack, "?jobId=" + quote(job_id))
    assert reasons == [{"message": reason}]


@pytest.mark.parametrize("job_id, reason", [("nope", "jobId must be a UUID"),
                                            (UNKNOWN, f"unknown job {UNKNOWN}")])
def test_refusal_over_long_polling_has_the_reason_too(stack: Stack, job_id: str,
                                                      reason: str) -> None:
    # (python-engineio's polling client sometimes takes one ping interval, 25 s,
    # to tear down after a refusal; the reason itself arrives at once.)
    assert refusal(stack, "?jobId=" + job_id, transport="polling") == [{"message": reason}]


@pytest.mark.parametrize("auth, reason", [
    ({"jobId": 5}, "jobId must be a UUID"),
    ({"jobId": None}, None),
    ({"jobId": ["a"]}, "jobId must be a UUID"),
    ({"jobId": UNKNOWN}, f"unknown job {UNKNOWN}"),
])
def test_bad_job_id_in_auth_is_refused_with_reason(stack: Stack, auth: Any,
                                                   reason: str | None) -> None:
    if reason is None:  # no job asked for: a plain connection is fine
        client = socketio.Client(reconnection=False)
        client.connect(stack.url, auth=auth, transports=["websocket"], wait_timeout=5)
        assert client.connected
        client.disconnect()
        return
    assert refusal(stack, auth=auth) == [{"message": reason}]


def test_server_still_serves_after_refusals(stack: Stack) -> None:
    start = stack.web.log_path.stat().st_size  # the log file is shared by the session
    for job_id in ("nope", UNKNOWN, "%00"):
        refusal(stack, "?jobId=" + job_id)
    # a request line over gunicorn's 4 KB limit is refused before any handler runs
    refusal(stack, "?jobId=" + "x" * 10_000, transport="polling")
    job_id = stack.start_job()
    rec = EventRecorder(stack.url, job_id)
    try:
        rec.wait_for(final_state_received(), timeout=30, what="final state")
    finally:
        rec.close()
    assert rec.payloads("updateProgress")[-1]["state"] == "succeeded"
    with stack.web.log_path.open("rb") as log:
        log.seek(start)
        assert b"Traceback" not in log.read()
