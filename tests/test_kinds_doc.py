"""The worked example of docs/kinds.md runs as written, on the real worker."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import requests

from shared.joblog import LogFollower
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import ROOT, EventRecorder, final_state_received, wait_until
from tests.test_docs_examples import json_lines, run_example, sh_blocks

DOC = Path(__file__).resolve().parent.parent / "docs" / "kinds.md"


def example_module() -> str:
    """The first Python block of the doc, dedented."""
    block = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/kinds.md has no python block"
    lines = block.group(1).splitlines()
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return "\n".join(line[indent:] for line in lines) + "\n"


def test_the_documented_kind_runs_live(log_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "myteam_jobs.py").write_text(example_module())
    (tmp_path / "redis").mkdir()
    stack = start_stack(log_dir, tmp_path / "redis", JOB_KINDS="myteam_jobs", RATE_LIMIT="0",
                        PYTHONPATH=f"{ROOT}{os.pathsep}{tmp_path}")
    try:
        kinds = requests.get(stack.url + "/api/kinds", timeout=5).json()["kinds"]
        assert "resize" in {k["name"] for k in kinds}
        policy = next(k["policy"] for k in kinds if k["name"] == "resize")
        assert (policy["retries"], policy["backoff"]) == (2, [5, 30])
        home = requests.get(stack.url + "/", timeout=5).text
        assert "Resize images" in home and 'id="f-resize-album"' in home
        bad = requests.post(stack.url + "/api/jobs", timeout=5,
                            json={"kind": "resize", "args": {"width": 5000}})
        assert bad.status_code == 400
        assert bad.json()["fields"] == {"album": "is required",
                                        "width": "5000 is greater than the maximum of 4096"}
        resp = requests.post(stack.url + "/api/jobs", timeout=5,
                             json={"kind": "resize", "args": {"album": "holiday", "width": 640}})
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
        rec = EventRecorder(stack.url, f"{job_id}&lastLogId=0-0")  # replay, then live
        try:
            rec.wait_for(final_state_received(), timeout=60, what="the example's end")
        finally:
            rec.close()
        running = [p for p in rec.payloads("updateProgress") if p["state"] == "running"]
        assert running and running[-1]["total"] == 20
        final = rec.payloads("updateProgress")[-1]
        assert final["result"] == {"album": "holiday", "resized": 20, "width": 640}
        follower = LogFollower()
        for batch in rec.payloads("jobLog"):
            follower.feed(batch)
        assert [line.text for line in follower.lines] == [
            f"holiday-{n:03d}.jpg: resized to 640 px" for n in range(1, 21)]
        unique_and_after(stack)
    finally:
        stop_stack(stack)


def unique_and_after(stack: Stack) -> None:
    """The doc's block on ``unique`` and ``after``, as written (the album's first resize
    has ended: a new one starts)."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    [example] = sh_blocks(DOC, "### One resize per album, and a resize after another")
    first, again, waiting = json_lines(run_example(stack, example))
    assert first["state"]["state"] == "queued" and "deduplicated" not in first
    assert again["id"] == first["id"] and again["deduplicated"] is True
    assert waiting["state"]["state"] == "waiting"
    assert waiting["state"]["waitingFor"] == [first["id"]]
    final = wait_until(lambda: (s := stack.job_state(waiting["id"]))["state"] == "succeeded"
                       and s, timeout=30, what="the job that waited")
    assert final["result"]["album"] == "beach" and final["waitingFor"] == []
