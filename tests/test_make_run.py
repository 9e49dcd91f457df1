"""``make run`` end to end: the launcher (``python -m dev.run``), honcho and the Procfile.

The stack runs in a temporary project directory (tests/launching.py) on a
non-default free port, with secrets exported in the environment and different
ones in ``.env``, and a PATH without the virtualenv, so the launcher has to get
every process to the right Python.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dev.run import add_missing_secrets, default_processes, launch_env
from shared.config import site_url_for
from tests.launching import SECRETS, Launched, launch, make_project, user_env
from tests.support import (
    EventRecorder,
    auth,
    final_state_received,
    free_port,
    start_job,
)

EXPORTED_SECRET = "exported-secret-key"
EXPORTED_TOKEN = "exported-progress-token"
FILE_TOKEN = "token-from-dot-env"


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[Launched]:
    """``python -m dev.run web worker redis`` from a temporary project directory."""
    project = make_project(tmp_path)
    port, redis_port = free_port(), free_port()
    # An older-format .env (two secrets) plus a PORT: the environment must win.
    (project / ".env").write_text(
        f"SECRET_KEY=secret-from-dot-env\nPROGRESS_TOKEN={FILE_TOKEN}\nPORT={free_port()}\n")
    env = user_env(PORT=str(port), SECRET_KEY=EXPORTED_SECRET, PROGRESS_TOKEN=EXPORTED_TOKEN,
                   EMBEDDED_REDIS_PORT=str(redis_port))
    running = launch(project, [sys.executable, "-m", "dev.run", "web", "worker", "redis"], env,
                     port, tmp_path / "make-run.log")
    try:
        running.wait_serving()
        yield running
    finally:
        running.stop()


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
    assert "kinds: csv_import, demo, external" in launched.output(), "the start lists its kinds"

    dashboard = launched.url + "/dashboard"
    assert requests.get(dashboard, timeout=5).status_code == 401
    opened = requests.get(dashboard, auth=("any", values["OPS_TOKEN"]), timeout=5)
    assert opened.status_code == 200


def test_launch_env_derives_the_bind_and_lets_the_environment_win() -> None:
    """PORT → WEB_BIND; .env fills only what the environment leaves unset; no SITE_URL is
    made up (the worker reads the address the site announces)."""
    env = launch_env({"PORT": "6123", "PATH": "/bin"}, {"PORT": "7000"}, "/venv/bin/python")
    assert env["WEB_BIND"] == "127.0.0.1:6123" and "SITE_URL" not in env
    assert env["PATH"].split(os.pathsep)[0] == "/venv/bin"
    assert env["JOBCAST_PYTHON"] == "/venv/bin/python"
    env = launch_env({}, {"SITE_URL": "https://jobs.example"}, "/p/bin/python")
    assert (env["WEB_BIND"], env["SITE_URL"]) == ("127.0.0.1:5000", "https://jobs.example")
    assert site_url_for("[::]:5000") == "http://[::1]:5000"
    assert site_url_for("0.0.0.0:8080") == "http://127.0.0.1:8080"
    assert site_url_for("unix:/run/jobcast.sock") == ""
    assert default_processes({"REDIS_URL": "redis://elsewhere:6379/0"}) == [
        "web", "worker", "cron", "webhooks"]
    assert default_processes({}) == ["web", "worker", "cron", "webhooks", "redis"]


def test_only_missing_secrets_are_appended(tmp_path: Path) -> None:
    """Exported or present secrets are not written; an empty OPS_TOKEN stays empty (open)."""
    path = tmp_path / ".env"
    path.write_text("SECRET_KEY=kept\nOPS_TOKEN=")  # no final newline
    path.chmod(0o644)
    written = add_missing_secrets(path, {"PROGRESS_TOKEN": "exported", "WORKER_TOKEN": "w",
                                         "REDIS_PASSWORD": "r"},
                                  {"SECRET_KEY": "kept", "OPS_TOKEN": ""})
    assert written == []
    assert path.read_text() == "SECRET_KEY=kept\nOPS_TOKEN="
    written = add_missing_secrets(path, {"PROGRESS_TOKEN": ""}, {"SECRET_KEY": "kept",
                                                                "OPS_TOKEN": "",
                                                                "REDIS_PASSWORD": "r"})
    assert written == ["PROGRESS_TOKEN", "WORKER_TOKEN"]
    lines = path.read_text().splitlines()
    assert lines[:2] == ["SECRET_KEY=kept", "OPS_TOKEN="] and lines[2].startswith("PROGRESS_TOKEN=")
    assert lines[3].startswith("WORKER_TOKEN=") and len(lines[3]) > 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    env = launch_env({"PROGRESS_TOKEN": ""}, {"PROGRESS_TOKEN": "from-file"}, "/p/bin/python")
    assert env["PROGRESS_TOKEN"] == "from-file", "an empty exported secret does not hide .env's"


def run_until_exit(tmp_path: Path, extra_env: dict[str, str], dot_env: dict[str, str] | None = None,
                   extra: tuple[str, ...] = ()) -> tuple[int, str]:
    """``make run`` that is expected to stop before starting anything: (status, output)."""
    project = make_project(tmp_path, dot_env=dot_env if dot_env is not None else SECRETS,
                           extra=extra)
    port = free_port()
    env = user_env(**{"PORT": str(port), "EMBEDDED_REDIS_PORT": str(free_port()), **extra_env})
    running = launch(project, [sys.executable, "-m", "dev.run"], env, port,
                     tmp_path / "make-run.log")
    try:
        status = running.wait_exit(30)
    finally:
        running.stop()
    return status, running.output()


def test_a_redis_url_that_does_not_answer_is_one_line_before_anything_starts(
        tmp_path: Path) -> None:
    dead = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    status, output = run_until_exit(tmp_path, {"REDIS_URL": dead})
    assert status != 0
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("Jobcast: no Redis answers at REDIS_URL=redis://:***@127.0.0.1:")
    assert "hunter2" not in output and "open http" not in output


def test_a_busy_embedded_redis_port_names_the_setting_that_moves_it(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        taken = busy.getsockname()[1]
        status, output = run_until_exit(tmp_path, {"EMBEDDED_REDIS_PORT": str(taken)})
    assert status != 0 and len(output.strip().splitlines()) == 1, output
    assert f"port {taken} on 127.0.0.1 is in use" in output
    assert "set EMBEDDED_REDIS_PORT to a free one" in output


def test_a_job_kinds_typo_is_one_line_naming_the_module(tmp_path: Path) -> None:
    status, output = run_until_exit(tmp_path, {"JOB_KINDS": "myteam_job"})
    assert status != 0
    assert output.strip().splitlines() == [
        "Jobcast: JOB_KINDS names 'myteam_job', which cannot be imported: No module named "
        "'myteam_job'; check the name, and that its directory is on PYTHONPATH (docs/kinds.md)"]


def test_an_error_inside_a_kind_module_is_one_line_then_its_traceback(tmp_path: Path) -> None:
    team = tmp_path / "team"
    team.mkdir()
    (team / "broken_kinds.py").write_text("import json\nVALUE = 1 / 0\n")
    status, output = run_until_exit(tmp_path, {"JOB_KINDS": "broken_kinds",
                                               "PYTHONPATH": str(team)})
    lines = output.strip().splitlines()
    assert status != 0
    assert lines[0] == ("Jobcast: JOB_KINDS module 'broken_kinds' failed to load: "
                        "ZeroDivisionError: division by zero")
    assert lines[1].startswith("Traceback") and "broken_kinds.py" in output
    assert "open http" not in output
