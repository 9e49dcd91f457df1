"""The reference external workers of examples/ (shell + curl, Node.js + fetch) run
against the real stack: each claims a job, reports progress and log lines, and
ends it succeeded with a result; with a wrong token each says so once and backs off."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.conftest import Stack
from tests.support import ROOT, TEST_WORKER_TOKEN, EventRecorder, final_state_received, wait_until

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
        # every report's message agrees with its counts (none blank, none ahead)
        reported = [p for p in progress if "total" in p]  # (the claim's push has no counts)
        assert [p["message"] for p in reported] == [f"step {p['current']} of {p['total']}"
                                                    for p in reported]
    finally:
        watcher.close()
    state = stack.job_state(job_id)
    assert state["state"] == "succeeded"
    assert state["result"] == {"steps": 4, "worker": f"ref-{which}"}
    log = requests.get(f"{stack.url}/api/jobs/{job_id}/log", timeout=5).json()["lines"]
    assert [line["text"] for line in log] == [f"step {i} of 4 done by ref-{which}"
                                              for i in range(1, 5)]


class ClaimRecorder:
    """A forwarding proxy between a worker and the site that notes when each request came."""

    def __init__(self, target: str) -> None:
        self.times: list[float] = []
        times = self.times

        class Forward(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                times.append(time.monotonic())
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = requests.post(target + self.path, data=body, timeout=30, headers={
                    name: self.headers[name] for name in ("Authorization", "Content-Type")
                    if name in self.headers})
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "text/plain"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """Where the worker is pointed."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("which", sorted(WORKERS))
def test_a_wrong_token_is_said_once_and_the_claims_back_off(stack: Stack, which: str,
                                                           tmp_path: Path) -> None:
    if which == "node" and shutil.which("node") is None:
        pytest.skip("node is not installed")
    proxy = ClaimRecorder(stack.url)
    errors = tmp_path / "stderr"
    env = {"PATH": "/usr/bin:/bin", "JOBCAST_URL": proxy.url, "WORKER_TOKEN": "wrong-token",
           "RETRY_DELAY": "0.1", "RETRY_MAX": "0.4"}
    with errors.open("w") as stderr:
        worker = subprocess.Popen([*WORKERS[which], f"bad-{which}"], env=env, stderr=stderr,
                                  stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: "missing or invalid worker token" in errors.read_text(), timeout=10,
                   what="the server's error text")
        wait_until(lambda: len(proxy.times) >= 6, timeout=20, what="six claims")
        said = errors.read_text().splitlines()
    finally:
        worker.terminate()
        worker.wait(10)
        proxy.close()
    # said once, though at least five claims were refused by then
    assert said == ["claim: HTTP 401: missing or invalid worker token "
                    "(retrying, at most every 0.4s)"]
    gaps = [b - a for a, b in zip(proxy.times, proxy.times[1:], strict=False)]
    for gap, pause in zip(gaps, [0.1, 0.2, 0.4, 0.4, 0.4], strict=False):
        assert gap >= pause - 0.01, gaps  # doubling from RETRY_DELAY...
    assert gaps[4] < 1.2, gaps  # ...up to RETRY_MAX (doubling on would wait 1.6 s)


def test_the_python_worker_runs_a_job(stack: Stack) -> None:
    """examples/python_worker.py (the jobcast_client library, clients/python) does what the
    shell and Node workers do, its reports batched."""
    resp = requests.post(stack.url + "/api/jobs", json={"kind": "external", "args": {"n": 4}},
                         timeout=5)
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["id"]
    env = {"PATH": "/usr/bin:/bin", "JOBCAST_URL": stack.url, "WORKER_TOKEN": TEST_WORKER_TOKEN,
           "ONCE": "1", "STEP_DELAY": "0.05"}
    done = subprocess.run([sys.executable, str(EXAMPLES / "python_worker.py"), "ref-python"],
                          env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert f"claimed {job_id}" in done.stdout and f"done {job_id}" in done.stdout
    state = stack.job_state(job_id)
    assert state["state"] == "succeeded" and (state["current"], state["total"]) == (4, 4)
    assert state["result"] == {"steps": 4, "worker": "ref-python"}
    log = requests.get(f"{stack.url}/api/jobs/{job_id}/log", timeout=5).json()["lines"]
    assert [line["text"] for line in log] == [f"step {i} of 4 done by ref-python"
                                              for i in range(1, 5)]


def test_reference_workers_are_short_and_need_no_json_tool() -> None:
    shell = (EXAMPLES / "worker.sh").read_text()
    node = (EXAMPLES / "worker.mjs").read_text()
    python = (EXAMPLES / "python_worker.py").read_text()
    assert len(shell.splitlines()) <= 80 and len(node.splitlines()) <= 80
    assert len(python.splitlines()) <= 80
    assert not re.search(r"\b(jq|python3?|perl)\b", shell)
    assert "require(" not in node and not re.search(r"^import ", node, re.M)


def test_shell_worker_is_posix(tmp_path: Path) -> None:
    dash = shutil.which("dash")
    if dash is None:
        pytest.skip("dash is not installed")
    checked = subprocess.run([dash, "-n", str(EXAMPLES / "worker.sh")], capture_output=True,
                             text=True, check=False)
    assert checked.returncode == 0, checked.stderr
