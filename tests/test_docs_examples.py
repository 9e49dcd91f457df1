"""The curl examples of README.md ("The progress callback"), docs/many-jobs.md
(recurring schedules, batches) and docs/api-keys.md run as written against a real stack, as a reader
would run them against ``make run`` (only the address is the stack's)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Stack
from tests.support import ROOT, TEST_OPS_TOKEN, TEST_PROGRESS_TOKEN, wait_until

DOC_URL = "http://127.0.0.1:5000"


def sh_blocks(page: Path, heading: str) -> list[str]:
    """The ```sh blocks of the section of ``page`` under ``heading`` (to the next heading)."""
    text = page.read_text()
    start = text.index(f"\n{heading}\n")
    following = re.search(r"\n#{1,6} ", text[start + len(heading) + 2:])
    section = text[start:start + len(heading) + 2 + following.start()] if following else text[start:]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def run_example(stack: Stack, script: str) -> str:
    """Run a documented shell example against ``stack``; its output (it must succeed)."""
    assert DOC_URL in script, "the example does not use the documented address"
    env = {"PATH": "/usr/bin:/bin", "PROGRESS_TOKEN": TEST_PROGRESS_TOKEN,
           "OPS_TOKEN": TEST_OPS_TOKEN}
    done = subprocess.run(["/bin/sh", "-eu"], input=script.replace(DOC_URL, stack.url), env=env,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert not done.stderr, done.stderr
    return done.stdout


def json_lines(output: str) -> list[Any]:
    """The lines of ``output`` that are JSON objects, decoded."""
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.fixture(autouse=True)
def _curl() -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")


def test_the_readme_progress_example_reports_and_shows_the_answer(stack: Stack) -> None:
    [example] = sh_blocks(ROOT / "README.md", "## The progress callback")
    output = run_example(stack, example)
    assert re.search(r"^HTTP/1\.1 204", output, re.M), output
    assert re.search(r"^X-Jobcast-Applied: 1\r?$", output, re.M | re.I), output
    assert re.search(r"^X-Jobcast-State: running\r?$", output, re.M | re.I), output
    page = re.search(rf"^{re.escape(stack.url)}/jobs/([0-9a-f-]{{36}})$", output, re.M)
    assert page, output
    state = stack.job_state(page.group(1))
    # an external job: no worker claims it, so the report stays as sent
    assert (state["state"], state["progress"], state["message"]) == ("running", 40, "copying")
    html = requests.get(page.group(0), timeout=5).text
    assert 'id="progress-span">40<' in html and "copying" in html


def test_the_schedule_example_creates_lists_and_pauses(stack: Stack) -> None:
    [example] = sh_blocks(ROOT / "docs" / "many-jobs.md", "## Recurring schedules")
    created, listed, paused = json_lines(run_example(stack, example))
    assert created["cron"] == "*/5 * * * *" and created["kind"] == "demo"
    assert created["args"] == {"steps": 3} and created["paused"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d[05]:00\.000Z", created["nextRun"])
    assert created["id"] in {s["id"] for s in listed["schedules"]}
    assert paused["id"] == created["id"] and paused["paused"] is True
    assert paused["nextRun"] is None


def test_the_batch_example_starts_three_jobs_that_complete(stack: Stack) -> None:
    [example] = sh_blocks(ROOT / "docs" / "many-jobs.md", "## Batches")
    output = run_example(stack, example)
    created, totals = json_lines(output)
    assert created["total"] == 3 and totals["batchId"] == created["batchId"]
    assert totals["total"] == 3 and totals["kind"] == "demo"
    assert output.splitlines()[-1] == f"{stack.url}/batches/{created['batchId']}"
    status = f"{stack.url}/api/batches/{created['batchId']}"
    final = wait_until(lambda: (t := requests.get(status, timeout=5).json())["complete"] and t,
                       timeout=30, what="the batch to complete")
    assert final["done"] == 3 and final["counts"]["succeeded"] == 3


def test_the_api_key_example_creates_uses_and_revokes_a_key(stack: Stack) -> None:
    [example] = sh_blocks(ROOT / "docs" / "api-keys.md", "## Creating, listing, revoking")
    output = run_example(stack, example)
    created, job, cancelled, listed, revoked = json_lines(output)
    assert created["key"].startswith("jc_") and created["owner"] == f"k-{created['id']}"
    assert created["quota"] == {"jobs": 500, "rate": 60}
    assert job["owner"] == created["owner"] and cancelled["state"]["state"] == "cancelled"
    assert created["id"] in {k["id"] for k in listed["keys"]}
    assert created["key"] not in json.dumps(listed)
    assert revoked["id"] == created["id"] and revoked["revoked"] is True
    assert output.splitlines()[-1] == "401"
