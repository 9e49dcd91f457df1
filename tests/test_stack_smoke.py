"""End to end with real processes: Redis, gunicorn+eventlet site, RQ worker."""

from __future__ import annotations

from tests.conftest import Stack
from tests.support import EventRecorder, final_state_received


def test_events_arrive_in_order_and_end_at_100_succeeded(stack: Stack) -> None:
    job_id = stack.start_job()
    rec = EventRecorder(stack.url, job_id)
    try:
        rec.wait_for(final_state_received(), timeout=20, what="final state")
    finally:
        rec.close()
    payloads = rec.payloads("updateProgress")
    assert all(p["jobId"] == job_id for p in payloads)
    progress = [p["progress"] for p in payloads]
    assert progress == sorted(progress), progress
    assert payloads[-1]["state"] == "succeeded" and payloads[-1]["progress"] == 100
    # every step that happened after we connected arrived: none skipped.
    running = [p["progress"] for p in payloads if p["state"] == "running"]
    if running:
        assert running == list(range(running[0], 101, 10)), running
