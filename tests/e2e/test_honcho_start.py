"""``honcho start -p <port>`` as a user runs it, with a browser watching a job end live.

The worker is given no ``SITE_URL``: honcho hands it a ``PORT`` of its own, so it
must find the site through the address the web process announced in Redis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.launching import SECRETS, honcho_start, make_project, user_env
from tests.support import free_port


def test_honcho_start_on_any_port_runs_a_job_to_succeeded_live(tmp_path: Path,
                                                               page: Any) -> None:
    project = make_project(tmp_path, dot_env=SECRETS)  # what `make setup` leaves
    port = free_port()
    env = user_env(EMBEDDED_REDIS_PORT=str(free_port()))
    running = honcho_start(project, port, env, tmp_path / "honcho.log")
    try:
        running.wait_serving()
        page.goto(running.url + "/")
        page.get_by_role("button", name="Start a new job").click()
        expect(page.locator("#state")).to_have_text("succeeded")
        expect(page.get_by_role("status")).to_contain_text("State: succeeded")
        output = running.output()
        assert f"Jobcast: open {running.url}/" in output
        assert f"workers without SITE_URL report to {running.url}" in output
        assert "WARNING" not in output, output
    finally:
        running.stop()
