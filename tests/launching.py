"""Starting the whole stack as a user does: ``make run`` (``dev.run``) or ``honcho start``.

Each start runs in a temporary project directory (links to the code and the
``Procfile``, its own ``.env`` and ``var/redis``) on free ports, with an
environment stripped of the settings a test run exports and a PATH without
the virtualenv, so the launcher has to get every process to the right Python.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from tests.support import ROOT, wait_until

VENV = Path(sys.executable).parent.parent
CODE = ("Procfile", "gunicorn.conf.py", "shared", "website", "worker", "dev")
SECRETS = {"SECRET_KEY": "project-secret-key", "PROGRESS_TOKEN": "project-progress-token",
           "WORKER_TOKEN": "project-worker-token", "OPS_TOKEN": "project-ops-token",
           "REDIS_PASSWORD": "project-redis-password"}


def make_project(root: Path, with_venv: bool = True, dot_env: Mapping[str, str] | None = None,
                 extra: tuple[str, ...] = ()) -> Path:
    """A project directory: the code linked in, ``.venv`` linked to this virtualenv
    (unless ``with_venv`` is False: a clone where set-up never ran) and ``.env``."""
    project = root / "project"
    project.mkdir()
    for name in (*CODE, *extra):
        (project / name).symlink_to(ROOT / name)
    if with_venv:
        (project / ".venv").symlink_to(VENV)
    if dot_env is not None:
        (project / ".env").write_text("".join(f"{k}={v}\n" for k, v in dot_env.items()))
    return project


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: none of the test run's settings, the
    virtualenv off PATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SOCKETIO_", "JOBCAST_", "PROGRESS_", "SITE_", "WEB_", "OPS_",
                                "REDIS_", "EMBEDDED_", "VIRTUAL_ENV", "PYTHON", "WORKER_"))
           and k not in ("PORT", "SECRET_KEY", "JOB_KINDS")}
    env.update({"PATH": "/usr/bin:/bin", "DEMO_STEP_DELAY": "0.05", "ACCESS_LOG": "0"})
    env.update(extra)
    return env


@dataclass
class Launched:
    """A running (or finished) ``make run`` or ``honcho start``."""

    proc: subprocess.Popen[bytes]
    url: str
    project: Path
    log: Path

    def output(self) -> str:
        """Everything honcho and the processes printed."""
        return self.log.read_text(errors="replace")

    def wait_serving(self, timeout: float = 60) -> None:
        """Wait until the site answers its home page."""
        def answers() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the stack exited:\n{self.output()}")
            return requests.get(self.url + "/", timeout=1).status_code == 200

        wait_until(answers, timeout=timeout, what=f"web at {self.url}")

    def wait_exit(self, timeout: float = 30) -> int:
        """Wait until the launcher exited; its status."""
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Stop it and every process it started (see :func:`stop_tree`)."""
        stop_tree(self.proc)


def launch(project: Path, argv: list[str], env: dict[str, str], port: int,
           log: Path) -> Launched:
    """Start ``argv`` in ``project`` (its output into ``log``)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=project, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return Launched(proc, f"http://127.0.0.1:{port}", project, log)


def honcho_start(project: Path, port: int, env: dict[str, str], log: Path) -> Launched:
    """``honcho start -p <port>`` as a user runs it, with the virtualenv's honcho."""
    return launch(project, [str(VENV / "bin" / "honcho"), "start", "-p", str(port)], env,
                  port, log)


def stop_tree(proc: subprocess.Popen[bytes], signum: int = signal.SIGTERM) -> None:
    """Send ``signum`` to honcho (it stops its process groups), then SIGKILL every group left."""
    try:
        family = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = [proc.pid]
    if proc.poll() is None:
        proc.send_signal(signum)
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
