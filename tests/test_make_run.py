"""``make run`` end to end: the launcher (``python -m shared.devrun``), honcho and the Procfile.

The stack runs in a temporary project directory (links to the code, its own
``.env`` and ``var/redis``) on a non-default free port, with secrets exported
in the environment and different ones in ``.env``, and a PATH without the
virtualenv, so the launcher has to get every process to the right Python.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from shared.devrun import add_missing_secrets, default_processes, launch_env, site_url_for
from tests.support import (
    ROOT,
    EventRecorder,
    auth,
    final_state_received,
    free_port,
    start_job,
    wait_until,
)

EXPORTED_SECRET = "exported-secret-key"
EXPORTED_TOKEN = "exported-progress-token"
FILE_TOKEN = "token-from-dot-env"


@dataclass
class Launched:
    """The running ``make run`` stack."""

    proc: subprocess.Popen[bytes]
    url: str
    project: Path
    log: Path

    def output(self) -> str:
        """Everything honcho and the processes printed."""
        return self.log.read_text(errors="replace")


def stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM honcho (it stops its process groups), then SIGKILL every group left."""
    try:
        family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = [proc.pid]
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
    for pid in family:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if proc.poll() is None:
        proc.wait(10)


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[Launched]:
    """``python -m shared.devrun web worker redis`` from a temporary project directory."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Procfile", "gunicorn.conf.py", "shared", "website", "worker"):
        (project / name).symlink_to(ROOT / name)
    port, redis_port = free_port(), free_port()
    # An older-format .env (two secrets) plus a PORT: the environment must win.
    (project / ".env").write_text(
        f"SECRET_KEY=secret-from-dot-env\nPROGRESS_TOKEN={FILE_TOKEN}\nPORT={free_port()}\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SOCKETIO_", "JOBCAST_", "PROGRESS_", "SITE_", "WEB_", "OPS_",
                                "REDIS_", "VIRTUAL_ENV", "PYTHON"))
           and k not in ("PORT", "SECRET_KEY")}
    env.update({
        "PATH": "/usr/bin:/bin",
        "PORT": str(port),
        "SECRET_KEY": EXPORTED_SECRET,
        "PROGRESS_TOKEN": EXPORTED_TOKEN,
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "DEMO_STEP_DELAY": "0.05",
        "ACCESS_LOG": "0",
    })
    log = tmp_path / "make-run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "shared.devrun", "web", "worker", "redis"],
                                cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    running = Launched(proc, f"http://127.0.0.1:{port}", project, log)
    try:
        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"make run exited:\n{running.output()}")
            return requests.get(running.url + "/", timeout=1).status_code == 200

        wait_until(answers, timeout=60, what=f"web at {running.url}")
        yield running
    finally:
        stop_tree(proc)


def test_make_run_serves_on_port_and_the_worker_reaches_it(launched: Launched) -> None:
    """A job runs to 100 % for a Socket.IO client; env secrets win over .env."""
    job_id = start_job(launched.url)
    recorder = EventRecorder(launched.url, job_id)
    try:
        events = recorder.wait_for(final_state_received(), timeout=60, what="the job to end")
    finally:
        recorder.close()
    last = [data for name, data in events if name == "updateProgress"][-1]
    assert (last["state"], last["progress"]) == ("succeeded", 100), launched.output()[-3000:]

    body = {"jobId": job_id, "progress": 100, "state": "succeeded"}
    ok = requests.post(launched.url + "/api/progress", json=body, headers=auth(EXPORTED_TOKEN),
                       timeout=5)
    assert ok.status_code == 204, ok.text
    stale = requests.post(launched.url + "/api/progress", json=body, headers=auth(FILE_TOKEN),
                          timeout=5)
    assert stale.status_code == 401, "the .env token must not win over the exported one"

    dot_env = launched.project / ".env"
    values = dict(line.split("=", 1) for line in dot_env.read_text().splitlines() if line)
    assert values["PROGRESS_TOKEN"] == FILE_TOKEN and values["SECRET_KEY"] == "secret-from-dot-env"
    assert len(values["OPS_TOKEN"]) >= 32, "the missing OPS_TOKEN is appended"
    assert len(values["WORKER_TOKEN"]) >= 32, "the missing WORKER_TOKEN is appended"
    assert stat.S_IMODE(dot_env.stat().st_mode) == 0o600
    assert f"open {launched.url}/" in launched.output()

    dashboard = launched.url + "/dashboard"
    assert requests.get(dashboard, timeout=5).status_code == 401
    opened = requests.get(dashboard, auth=("any", values["OPS_TOKEN"]), timeout=5)
    assert opened.status_code == 200


def test_launch_env_derives_bind_and_site_url_and_lets_the_environment_win() -> None:
    """PORT → WEB_BIND → SITE_URL; .env fills only what the environment leaves unset."""
    env = launch_env({"PORT": "6123", "PATH": "/bin"}, {"PORT": "7000", "SITE_URL": ""},
                     "/venv/bin/python")
    assert (env["WEB_BIND"], env["SITE_URL"]) == ("127.0.0.1:6123", "http://127.0.0.1:6123")
    assert env["PATH"].split(os.pathsep)[0] == "/venv/bin"
    assert env["JOBCAST_PYTHON"] == "/venv/bin/python"
    env = launch_env({"WEB_BIND": "0.0.0.0:8080"}, {"PORT": "7000"}, "/p/bin/python")
    assert env["SITE_URL"] == "http://127.0.0.1:8080"
    env = launch_env({}, {"SITE_URL": "https://jobs.example"}, "/p/bin/python")
    assert (env["WEB_BIND"], env["SITE_URL"]) == ("127.0.0.1:5000", "https://jobs.example")
    assert site_url_for("[::]:5000") == "http://[::1]:5000"
    assert default_processes({"REDIS_URL": "redis://elsewhere:6379/0"}) == ["web", "worker", "cron"]
    assert default_processes({}) == ["web", "worker", "cron", "redis"]


def test_only_missing_secrets_are_appended(tmp_path: Path) -> None:
    """Exported or present secrets are not written; an empty OPS_TOKEN stays empty (open)."""
    path = tmp_path / ".env"
    path.write_text("SECRET_KEY=kept\nOPS_TOKEN=")  # no final newline
    path.chmod(0o644)
    written = add_missing_secrets(path, {"PROGRESS_TOKEN": "exported", "WORKER_TOKEN": "w"},
                                  {"SECRET_KEY": "kept", "OPS_TOKEN": ""})
    assert written == []
    assert path.read_text() == "SECRET_KEY=kept\nOPS_TOKEN="
    written = add_missing_secrets(path, {"PROGRESS_TOKEN": ""}, {"SECRET_KEY": "kept",
                                                                "OPS_TOKEN": ""})
    assert written == ["PROGRESS_TOKEN", "WORKER_TOKEN"]
    lines = path.read_text().splitlines()
    assert lines[:2] == ["SECRET_KEY=kept", "OPS_TOKEN="] and lines[2].startswith("PROGRESS_TOKEN=")
    assert lines[3].startswith("WORKER_TOKEN=") and len(lines[3]) > 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    env = launch_env({"PROGRESS_TOKEN": ""}, {"PROGRESS_TOKEN": "from-file"}, "/p/bin/python")
    assert env["PROGRESS_TOKEN"] == "from-file", "an empty exported secret does not hide .env's"
