"""A worker whose site address is wrong still records every job's end (issue 24).

Something else may answer where the worker sends its callbacks (another program
on that port answering 403, as macOS's AirPlay does on :5000), or nothing may
answer at all (a host that drops the packets). Either way the job ends as it
should, through the worker's fallback (written to Redis, pushed by the site's
relay), and a page watching it sees the end: never a job left ``queued``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import (
    EventRecorder,
    Process,
    RedisServer,
    final_state_received,
    free_port,
    job_state,
    stack_env,
    start_web,
    start_worker,
)


class Refuses(BaseHTTPRequestHandler):
    """Another program at the address: 403 for everything."""

    def _refuse(self) -> None:
        body = b"Forbidden\n"
        self.send_response(403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse  # noqa: N815 - http.server's names

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet."""


@pytest.fixture
def refusing_server() -> Iterator[str]:
    """A URL where an HTTP server answers 403 to everything."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A URL where connections are accepted by the kernel and never answered."""
    sock = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def run_demo_with_wrong_address(log_dir: Path, tmp_path: Path, site_url: str,
                                **settings: str) -> tuple[dict[str, object], Process]:
    """A site, and a worker whose SITE_URL is ``site_url``: a demo job's final state as a
    watching client saw it, and the worker."""
    server = RedisServer(log_dir, tmp_path / "redis").start()
    env = stack_env(server.url, free_port(), **settings)
    procs: list[Process] = [server]
    try:
        web = start_web(env, log_dir, name="web-wrong")
        procs.append(web)
        worker = start_worker({**env, "SITE_URL": site_url}, log_dir,
                              name="worker-wrong")
        procs.append(worker)
        created = web_create(env["SITE_URL"])
        rec = EventRecorder(env["SITE_URL"], created)
        try:
            events = rec.wait_for(final_state_received(), timeout=60, what="the job's end")
        finally:
            rec.close()
        final = [data for name, data in events if name == "updateProgress"][-1]
        assert job_state(env["SITE_URL"], created)["state"] == final["state"]
        return final, worker
    finally:
        for proc in reversed(procs):
            proc.stop()


def web_create(url: str) -> str:
    """A 3-step demo job; its id."""
    import requests

    resp = requests.post(url + "/api/jobs", json={"kind": "demo", "args": {"steps": 3}},
                         timeout=5)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def test_a_403_at_the_site_address_still_ends_the_job(log_dir: Path, tmp_path: Path,
                                                      refusing_server: str) -> None:
    final, worker = run_demo_with_wrong_address(log_dir, tmp_path, refusing_server)
    assert (final["state"], final["progress"], final.get("result")) == (
        "succeeded", 100, {"steps": 3}), worker.log_tail()
    log = worker.log_tail(100_000)
    assert "refused (403)" in log and log.count("through the fallback") == 1, log[-3000:]


def test_an_address_that_never_answers_costs_one_wait_not_one_per_report(
        log_dir: Path, tmp_path: Path, silent_server: str) -> None:
    """Each report used to wait out its retries (5 s a try here) before falling back, so
    the job's 4 reports outlived its 12 s timeout; now the first one falls back and the
    others follow it at once."""
    final, worker = run_demo_with_wrong_address(
        log_dir, tmp_path, silent_server, JOB_TIMEOUT="12", REPORT_RETRY_SECONDS="2")
    assert (final["state"], final.get("result")) == ("succeeded", {"steps": 3}), \
        worker.log_tail()
