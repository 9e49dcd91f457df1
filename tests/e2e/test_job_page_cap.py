"""The job page while the Socket.IO connection cap is full (issue #13, part 4).

Another client (127.0.0.2) fills the cap with bare Engine.IO handshakes that
say they come to watch a job (``?jobId=``: without it they may fill only the
part of the cap not kept for watchers, issue #26); the page's own handshake
gets 503. The page must fall back to polling the JSON
state and still reach the job's final state instead of sitting at
"reconnecting…".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Response, expect

from shared.protocol import new_id
from tests.conftest import Stack, start_stack, stop_stack
from tests.test_attacks_limits import handshake

CAP = 20


@pytest.fixture(scope="module")
def full_site(browser: Any, log_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with a 20-session cap that bare sessions may hold for minutes."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("e2e-cap-redis"),
                          DEMO_STEP_DELAY="0.6", SOCKETIO_MAX_CONNECTIONS=str(CAP),
                          SOCKETIO_MAX_PER_CLIENT=str(CAP), SOCKETIO_CONNECT_TIMEOUT="600",
                          SOCKETIO_IDLE_JOIN_SECONDS="0")
    yield running
    stop_stack(running)


def test_job_page_reaches_final_state_while_the_cap_is_full(full_site: Stack,
                                                            page: Page) -> None:
    watching = f"&jobId={new_id()}"
    statuses = [handshake(full_site.url, "127.0.0.2", query=watching)[0] for _ in range(CAP)]
    assert statuses == [200] * CAP
    assert handshake(full_site.url, "127.0.0.3")[0] == 503  # the cap is full

    socket_answers: list[int] = []

    def note(resp: Response) -> None:
        if "/socket.io/" in resp.url:
            socket_answers.append(resp.status)

    page.on("response", note)
    job_id = full_site.start_job()
    page.goto(f"{full_site.url}/jobs/{job_id}")
    expect(page.locator("#connection-text")).to_have_text("reconnecting… (polling meanwhile)")
    expect(page.locator("#state")).to_have_text("succeeded")
    expect(page.locator("#progress-span")).to_have_text("100")
    assert 503 in socket_answers
    assert handshake(full_site.url, "127.0.0.3")[0] == 503  # it was full all along
