"""The progress element on a plain page of another origin (issue #30, section 2), in a
real Chromium against a real stack with ``JOB_VISIBILITY=owner``: the page, served by
a tiny ``http.server`` on another port, embeds ``<jobcast-progress>`` with a watch
token and sees the job go to 100 % and "succeeded" live; axe finds nothing serious
in light and dark, and it fits 390 px. A page of an origin not in ``EMBED_ORIGINS``
cannot even load the element."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Locator, Page, expect

from tests.conftest import Stack, start_stack, stop_stack
from tests.e2e.a11y import PHONE, assert_no_serious_axe_violations, page_width
from tests.support import auth, create_job, free_port, start_worker

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Your order</title>
<style>
  :root {{ color-scheme: light dark; }}
  body {{ font-family: system-ui, sans-serif; margin: 1rem; background: #fff; color: #1b1b1b; }}
  @media (prefers-color-scheme: dark) {{ body {{ background: #121212; color: #ececec; }} }}
  jobcast-progress {{ --jobcast-radius: 4px; }}
</style>
<script src="{site}/static/jobcast-progress.js" crossorigin defer></script>
</head>
<body>
<main>
  <h1>Your report is being built</h1>
  <jobcast-progress job="{job}" token="{token}" label="Report progress" log></jobcast-progress>
</main>
</body>
</html>
"""

# Test instrumentation (not part of the element): what it showed at each update.
RECORD = """
window.__seen = [];
document.addEventListener("jobcast-update", function (e) {
  var root = e.target.shadowRoot;
  window.__seen.push([e.detail.progress, e.detail.state,
                      root.querySelector(".connection").getAttribute("data-status")]);
});
"""


class Embedder:
    """A plain HTTP server on 127.0.0.1:<port> serving one page (another origin)."""

    def __init__(self, port: int) -> None:
        self.page = ""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = owner.page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def embedders() -> Iterator[tuple[Embedder, Embedder]]:
    """The listed page's server and an unlisted one."""
    listed, unlisted = Embedder(free_port()), Embedder(free_port())
    yield listed, unlisted
    listed.close()
    unlisted.close()


@pytest.fixture(scope="module")
def site(browser: Any, log_dir: Path, tmp_path_factory: pytest.TempPathFactory,
         embedders: tuple[Embedder, Embedder]) -> Iterator[Stack]:
    """Private jobs; the first embedder's origin listed; the demo job takes about 3 s."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("embed-redis"),
                          JOB_VISIBILITY="owner", EMBED_ORIGINS=embedders[0].url,
                          DEMO_STEP_DELAY="0.3")
    yield running
    stop_stack(running)


def watched_job(site: Stack) -> tuple[str, str]:
    """A new job's id and a watch token for it (asked as its owner, server-side)."""
    job = create_job(site.url)
    resp = requests.post(f"{site.url}/api/jobs/{job['id']}/watch-token",
                         headers=auth(job["controlToken"]), timeout=5)
    assert resp.status_code == 201, resp.text
    return job["id"], resp.json()["token"]


def serve(embedder: Embedder, site: Stack, job: str, token: str) -> None:
    embedder.page = PAGE.format(site=site.url, job=job, token=token)


def open_embedded(site: Stack, embedder: Embedder, page: Page, status: str) -> Locator:
    """A new job's element on ``embedder``'s page, once its connection shows ``status``
    (``live`` or ``polling``): the job waits in its queue until then, so every update
    it has comes after."""
    site.worker.stop()
    try:
        job, token = watched_job(site)
        serve(embedder, site, job, token)
        page.add_init_script(RECORD)
        page.goto(embedder.url + "/")
        element = page.locator("jobcast-progress")
        expect(element.locator(".connection")).to_have_attribute("data-status", status)
    finally:
        site.worker = start_worker(site.env, site.log_dir)
    return element


def test_an_embedded_element_sees_the_job_succeed_live(
        site: Stack, embedders: tuple[Embedder, Embedder], page: Page) -> None:
    element = open_embedded(site, embedders[0], page, "live")

    bar = page.get_by_role("progressbar", name="Report progress")
    expect(element).to_have_attribute("data-state", "succeeded")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(bar).to_have_attribute("aria-valuemin", "0")
    expect(bar).to_have_attribute("aria-valuemax", "100")
    expect(page.get_by_role("status")).to_have_text("succeeded")
    expect(element.locator(".counts")).to_have_text("10 of 10")
    expect(element.locator(".connection")).to_have_attribute("data-status", "done")
    expect(page.get_by_role("list", name="Report progress: log").get_by_role("listitem")
           ).not_to_have_count(0)
    seen = page.evaluate("window.__seen")
    progress = [value for value, _state, _status in seen]
    assert progress == sorted(progress), seen
    assert any(state == "running" and 0 < value < 100 and status == "live"
               for value, state, status in seen), seen  # live over Socket.IO, not polled


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_embedding_page_passes_axe_and_fits_a_phone(
        site: Stack, embedders: tuple[Embedder, Embedder], new_page: Callable[..., Page],
        scheme: str) -> None:
    job, token = watched_job(site)
    serve(embedders[0], site, job, token)
    page = new_page(color_scheme=scheme)
    page.set_viewport_size(PHONE)
    page.goto(embedders[0].url + "/")
    expect(page.get_by_role("progressbar")).to_be_visible()
    expect(page.get_by_role("status")).not_to_be_empty()
    assert page_width(page) <= PHONE["width"]
    assert_no_serious_axe_violations(page, scheme)
    expect(page.locator("jobcast-progress")).to_have_attribute("data-state", "succeeded")
    assert page_width(page) <= PHONE["width"]  # with the log shown
    assert_no_serious_axe_violations(page, scheme)


def test_a_page_of_an_unlisted_origin_cannot_load_the_element(
        site: Stack, embedders: tuple[Embedder, Embedder], page: Page) -> None:
    job, token = watched_job(site)
    serve(embedders[1], site, job, token)
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(embedders[1].url + "/")
    page.wait_for_load_state("load")
    assert page.evaluate("window.customElements.get('jobcast-progress') === undefined")
    assert any(url.endswith("/static/jobcast-progress.js") for url in failed), failed


def test_without_socket_io_the_element_polls_to_the_end(
        site: Stack, embedders: tuple[Embedder, Embedder], page: Page) -> None:
    """A network that lets no Socket.IO request through (a proxy that strips
    WebSockets and long polls, say): the element says it polls, and still shows the
    job to 100 % and "succeeded", from ``GET /api/jobs/<id>`` with the watch token."""
    blocked: list[str] = []

    def refuse(route: Any) -> None:
        blocked.append(route.request.url)
        route.abort()

    page.route("**/socket.io/**", refuse)
    element = open_embedded(site, embedders[0], page, "polling")
    expect(element).to_have_attribute("data-state", "succeeded")
    expect(page.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(page.get_by_role("status")).to_have_text("succeeded")
    assert blocked, "no Socket.IO request was tried"
    seen = page.evaluate("window.__seen")
    assert all(status != "live" for _value, _state, status in seen), seen
    assert any(state == "succeeded" for _value, state, _status in seen), seen
