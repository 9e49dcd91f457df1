"""``honcho start`` without ``make run``: a clone with no set-up, an external or dead
``REDIS_URL``, and Ctrl-C stopping the stack in order (tests/launching.py).

The job running live in a browser is tests/e2e/test_honcho_start.py.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.launching import SECRETS, honcho_start, make_project, stop_tree, user_env
from tests.support import free_port, start_job, wait_until
from tests.support import job_state as read_state

NO_VENV_LINE = ("Jobcast: there is no virtualenv at .venv yet: run 'make setup' once "
                "(or 'make run'), then 'honcho start'")


def printed(output: str) -> list[str]:
    """What the processes printed, without honcho's prefixes and its own lines."""
    lines = []
    for line in output.splitlines():
        name, bar, text = line.partition("| ")
        if bar and not name.strip().endswith("system"):
            lines.append(text)
    return lines


def test_a_clone_without_setup_says_in_one_line_what_to_run(tmp_path: Path) -> None:
    project = make_project(tmp_path, with_venv=False)
    port = free_port()
    running = honcho_start(project, port, user_env(), tmp_path / "honcho.log")
    try:
        assert running.wait_exit(30) != 0
    finally:
        running.stop()
    assert printed(running.output()) == [NO_VENV_LINE], running.output()


def test_a_dead_redis_url_is_one_line_and_nothing_starts(tmp_path: Path) -> None:
    project = make_project(tmp_path, dot_env=SECRETS)
    port = free_port()
    dead = f"redis://127.0.0.1:{free_port()}/0"
    running = honcho_start(project, port, user_env(REDIS_URL=dead), tmp_path / "honcho.log")
    try:
        assert running.wait_exit(30) != 0
    finally:
        running.stop()
    lines = [line for line in printed(running.output()) if not line.startswith("redis: ")]
    assert len(lines) == 1 and lines[0].startswith(
        f"Jobcast: no Redis answers at REDIS_URL={dead}"), running.output()


def test_an_external_redis_url_starts_no_second_redis_and_ctrl_c_stops_in_order(
        tmp_path: Path, redis_url: str) -> None:
    """The Procfile's redis entry starts nothing on the external Redis's port; the stack
    serves; Ctrl-C (SIGINT to honcho) stops every process without honcho's SIGKILL."""
    project = make_project(tmp_path, dot_env=SECRETS)
    port = free_port()
    running = honcho_start(project, port, user_env(REDIS_URL=redis_url), tmp_path / "honcho.log")
    try:
        running.wait_serving()
        job_id = start_job(running.url)
        wait_until(lambda: read_state(running.url, job_id)["state"] == "succeeded", timeout=60,
                   what="the job to succeed")
        assert "none is started here" in running.output()
        started = time.monotonic()
        running.proc.send_signal(signal.SIGINT)
        assert running.wait_exit(15) is not None
        assert time.monotonic() - started < 5, "honcho waited for a process to be killed"
    finally:
        stop_tree(running.proc)
    assert "SIGKILL" not in running.output(), running.output()


def test_ctrl_c_stops_the_embedded_redis_last(tmp_path: Path) -> None:
    """honcho signals every process at once; the embedded Redis waits for the others."""
    project = make_project(tmp_path, dot_env=SECRETS)
    port = free_port()
    running = honcho_start(project, port, user_env(EMBEDDED_REDIS_PORT=str(free_port())),
                           tmp_path / "honcho.log")
    try:
        running.wait_serving()
        job_id = start_job(running.url)
        wait_until(lambda: read_state(running.url, job_id)["state"] == "succeeded", timeout=60,
                   what="the job to succeed")
        running.proc.send_signal(signal.SIGINT)
        assert running.wait_exit(15) is not None
    finally:
        stop_tree(running.proc)
    output = running.output()
    stopped = [line.split("| ", 1)[1].split()[0] for line in output.splitlines()
               if "system" in line.split("| ", 1)[0] and " stopped " in line]
    assert stopped[-1] == "redis.1", output
    assert set(stopped) == {"web.1", "worker.1", "cron.1", "webhooks.1", "redis.1"}, output
    assert "SIGKILL" not in output and "Redis unavailable" not in output, output
