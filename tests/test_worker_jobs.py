"""Job functions called directly, and the job boundary with a real HTTP callback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shared.callback import ProgressReporter, ReportError
from tests.support import free_port
from worker.boundary import job_boundary

JOB = "6f1c5a8e-3b7d-4c2a-9e0f-1a2b3c4d5e6f"


class Site:
    """A real HTTP server that records callbacks and answers scripted statuses."""

    def __init__(self, statuses: list[int], port: int = 0) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, Any], str]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers["Content-Length"])
                site.received.append((json.loads(self.rfile.read(length)),
                                      self.headers.get("Authorization", "")))
                status = site.statuses.pop(0) if site.statuses else 204
                self.send_response(status)
                body = b'{"error": "scripted"}' if status >= 400 else b""
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/progress"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    running = Site([])
    yield running
    running.close()


def test_boundary_reports_success(site: Site) -> None:
    reporter = ProgressReporter(site.url, "tok")
    with job_boundary(JOB, reporter):
        reporter.report(JOB, 50)
    assert [b["state"] for b, _ in site.received] == ["running", "succeeded"]
    assert all(auth == "Bearer tok" for _, auth in site.received)
    seqs = [b["seq"] for b, _ in site.received]
    assert seqs == sorted(seqs) and len(set(seqs)) == 2


def test_boundary_reports_failure_then_reraises(site: Site) -> None:
    reporter = ProgressReporter(site.url, "tok")
    with pytest.raises(ZeroDivisionError):
        with job_boundary(JOB, reporter):
            1 / 0  # noqa: B018
    (body, _), = site.received
    assert body["state"] == "failed" and "ZeroDivisionError" in body["message"]


def test_reporter_retries_5xx_and_429(site: Site) -> None:
    site.statuses[:] = [503, 500, 429]
    pauses: list[float] = []
    reporter = ProgressReporter(site.url, "tok", sleep=pauses.append)
    assert reporter.report(JOB, 10) is True
    assert len(site.received) == 4 and len(pauses) == 3
    assert all(0 <= p <= 5 for p in pauses)


def test_reporter_retries_connection_errors_until_the_site_is_up() -> None:
    port = free_port()  # nothing listens yet: the first attempts are refused
    pauses: list[float] = []
    started: list[Site] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 2:  # the site comes up after two refused connections
            started.append(Site([503], port=port))

    reporter = ProgressReporter(f"http://127.0.0.1:{port}/api/progress", "tok", sleep=pause,
                                fallback=lambda update: pytest.fail("fell back"))
    try:
        assert reporter.report(JOB, 10) is True
    finally:
        for running in started:
            running.close()
    # refused, refused, then 503, then taken
    assert len(pauses) == 3 and [b["progress"] for b, _ in started[0].received] == [10, 10]


def test_reporter_gives_up_on_4xx_at_once(site: Site) -> None:
    site.statuses[:] = [400]
    reporter = ProgressReporter(site.url, "tok", sleep=lambda s: None)
    with pytest.raises(ReportError) as info:
        reporter.report(JOB, 10)
    assert info.value.status == 400 and len(site.received) == 1


@pytest.mark.parametrize("status", [400, 403, 404, 405])
def test_a_refusal_that_is_not_the_sites_own_goes_to_the_fallback_and_stays_there(
        site: Site, status: int) -> None:
    """Another program answering at the address: the fallback takes this update and the
    rest of the job's, without asking the wrong address again."""
    site.statuses[:] = [status]
    fallen: list[Any] = []
    reporter = ProgressReporter(site.url, "tok", sleep=lambda s: None, fallback=fallen.append)
    assert reporter.report(JOB, 10) is False
    assert reporter.report(JOB, 100, "succeeded") is False
    assert [u.state for u in fallen] == ["running", "succeeded"] and len(site.received) == 1


@pytest.mark.parametrize(("status", "state", "falls_back"), [
    (401, "running", False), (401, "succeeded", True), (401, "failed", True),
    (413, "running", False), (413, "succeeded", False)])
def test_the_sites_own_refusals_raise_but_an_end_refused_for_its_token_is_kept(
        site: Site, status: int, state: str, falls_back: bool) -> None:
    site.statuses[:] = [status]
    fallen: list[Any] = []
    reporter = ProgressReporter(site.url, "tok", sleep=lambda s: None, fallback=fallen.append)
    if falls_back:
        assert reporter.report(JOB, 0, state) is False and fallen[0].state == state
    else:
        with pytest.raises(ReportError) as info:
            reporter.report(JOB, 0, state)
        assert info.value.status == status and fallen == []


def test_a_callable_url_is_read_per_try_and_none_is_retried_like_no_answer(site: Site) -> None:
    """The worker's announced address: unknown at first (retried), then the site's."""
    answers = iter([None, None, site.url])
    pauses: list[float] = []
    reporter = ProgressReporter(lambda: next(answers), "tok", sleep=pauses.append)
    assert reporter.report(JOB, 10) is True
    assert len(pauses) == 2 and len(site.received) == 1


def test_reporter_falls_back_when_site_is_unreachable() -> None:
    fallen: list[Any] = []
    reporter = ProgressReporter("http://127.0.0.1:9/api/progress", "tok", retry_seconds=0.3,
                                timeout=0.2, fallback=fallen.append)
    assert reporter.report(JOB, 70, "succeeded") is False
    assert fallen[0].progress == 70 and fallen[0].state == "succeeded"


def test_reporter_without_fallback_raises_when_unreachable() -> None:
    reporter = ProgressReporter("http://127.0.0.1:9/api/progress", "tok", retry_seconds=0.2,
                                timeout=0.1)
    with pytest.raises(ReportError, match="attempt"):
        reporter.report(JOB, 70)
