"""The reference external workers of examples/ (shell + curl, Node.js + fetch) run
against the real stack: each claims a job, reports progress and log lines, and
ends it succeeded with a result."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.conftest import Stack
from tests.support import ROOT, TEST_WORKER_TOKEN, EventRecorder, final_state_received

EXAMPLES = ROOT / "examples"
WORKERS = {
    "shell": ["/bin/sh", str(EXAMPLES / "worker.sh")],
    "node": [shutil.which("node") or "node", str(EXAMPLES / "worker.mjs")],
}


def run_once(stack: Stack, which: str, name: str, timeout: float = 30) -> str:
    """Run a reference worker for one job; its output."""
    env = {"PATH": "/usr/bin:/bin", "JOBCAST_URL": stack.url, "WORKER_TOKEN": TEST_WORKER_TOKEN,
           "ONCE": "1", "STEP_DELAY": "0.05"}
    done = subprocess.run([*WORKERS[which], name], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("which", sorted(WORKERS))
def test_reference_worker_runs_a_job(stack: Stack, which: str) -> None:
    if which == "node" and shutil.which("node") is None:
        pytest.skip("node is not installed")
    resp = requests.post(stack.url + "/api/jobs", json={"kind": "external", "args": {"n": 4}},
                         timeout=5)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    watcher = EventRecorder(stack.url, job_id)
    try:
        output = run_once(stack, which, f"ref-{which}")
        assert f"claimed {job_id}" in output and f"done {job_id}" in output
        watcher.wait_for(final_state_received(), what="the final state")
        progress = [p for p in watcher.payloads("updateProgress") if p["state"] == "running"]
        assert {"step 2 of 4", "step 4 of 4"} <= {p["message"] for p in progress}
    finally:
        watcher.close()
    state = stack.job_state(job_id)
    assert state["state"] == "succeeded"
    assert state["result"] == {"steps": 4, "worker": f"ref-{which}"}
    log = requests.get(f"{stack.url}/api/jobs/{job_id}/log", timeout=5).json()["lines"]
    assert [line["text"] for line in log] == [f"step {i} of 4 done by ref-{which}"
                                              for i in range(1, 5)]


def test_reference_workers_are_short_and_need_no_json_tool() -> None:
    shell = (EXAMPLES / "worker.sh").read_text()
    node = (EXAMPLES / "worker.mjs").read_text()
    assert len(shell.splitlines()) <= 80 and len(node.splitlines()) <= 80
    assert not re.search(r"\b(jq|python3?|perl)\b", shell)
    assert "require(" not in node and not re.search(r"^import ", node, re.M)


def test_shell_worker_is_posix(tmp_path: Path) -> None:
    dash = shutil.which("dash")
    if dash is None:
        pytest.skip("dash is not installed")
    checked = subprocess.run([dash, "-n", str(EXAMPLES / "worker.sh")], capture_output=True,
                             text=True, check=False)
    assert checked.returncode == 0, checked.stderr
