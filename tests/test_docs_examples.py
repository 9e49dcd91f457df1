"""The curl example of README.md ("The progress callback") runs as written against
a real stack, as a reader would run it against ``make run`` (only the address is
the stack's)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from tests.conftest import Stack
from tests.support import ROOT, TEST_OPS_TOKEN, TEST_PROGRESS_TOKEN

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
