"""The real entry points refuse to start without secrets, with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, free_port


def run_without_secrets(cmd: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("SECRET_KEY", "PROGRESS_TOKEN", "WORKER_TOKEN", "JOBCAST_ENV")}
    env.update({"PYTHONPATH": str(ROOT), "PORT": str(free_port()),
                "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", **extra})
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


BIN = Path(sys.executable).parent


COMMANDS = {"web": [str(BIN / "gunicorn"), "website:create_app()"],
            "worker": [sys.executable, "-m", "worker"]}


# The site also needs the external workers' token. The worker signs nothing: it needs
# PROGRESS_TOKEN only (that it runs without SECRET_KEY is
# tests/test_attacks_stack.py::test_the_worker_runs_without_secret_key...).
@pytest.mark.parametrize(("name", "extra", "missing"), [
    ("web", {}, ["SECRET_KEY", "PROGRESS_TOKEN", "WORKER_TOKEN"]),
    ("web", {"SECRET_KEY": "only-this-one"}, ["PROGRESS_TOKEN", "WORKER_TOKEN"]),
    ("web", {"PROGRESS_TOKEN": "only-this-one"}, ["SECRET_KEY", "WORKER_TOKEN"]),
    ("worker", {}, ["PROGRESS_TOKEN"]),
    ("worker", {"SECRET_KEY": "only-this-one"}, ["PROGRESS_TOKEN"]),
], ids=["web-none", "web-no-progress-token", "web-no-secret-key", "worker-none",
        "worker-no-progress-token"])
def test_entry_point_without_secrets_exits_with_message(name: str, extra: dict[str, str],
                                                        missing: list[str]) -> None:
    cmd = COMMANDS[name]
    result = run_without_secrets(cmd, **extra)
    assert result.returncode != 0
    assert f"jobcast {name}: configuration error" in result.stderr
    assert f"{' and '.join(missing)} must be set" in result.stderr, result.stderr
    for given in extra:
        assert given not in result.stderr.split("must be set")[0], result.stderr
    if name == "worker":
        assert "SECRET_KEY" not in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_with_bad_setting_names_it() -> None:
    result = run_without_secrets([sys.executable, "-m", "worker"], SECRET_KEY="s",
                                 PROGRESS_TOKEN="t", WORKER_TOKEN="w", RATE_LIMIT="many")
    assert result.returncode != 0 and "RATE_LIMIT must" in result.stderr
