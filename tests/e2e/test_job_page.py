"""The job page in a real Chromium against the real stack (Redis, gunicorn+eventlet, worker)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, Route, WebSocketRoute, expect

from shared.protocol import UPDATE_PROGRESS
from tests.conftest import Stack
from tests.support import start_web, wait_until

JOB_URL = re.compile(r"/jobs/[0-9a-f-]{36}$")
SOCKET_IO = re.compile(r"/socket\.io/\?")
STATE_URL = re.compile(r"/api/jobs/[0-9a-f-]{36}$")
DONE_TEXT = "not needed, the job has finished"
PACKET_SEPARATOR = "\x1e"  # between the packets of one Engine.IO long-poll answer
STATE_EVENT = f'42["{UPDATE_PROGRESS}",'  # a Socket.IO event packet, default namespace

# Test instrumentation (not part of the site): record every value the page shows.
RECORD_STATES = """
window.__seen = [];
document.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("job");
  if (!root) { return; }
  function record() {
    window.__seen.push([Number(document.getElementById("progress-span").textContent),
                        document.getElementById("state").textContent]);
  }
  record();
  new MutationObserver(record).observe(root, {subtree: true, childList: true,
                                              characterData: true});
  window.__statuses = [];
  var conn = document.getElementById("connection");
  new MutationObserver(function () {
    window.__statuses.push(conn.getAttribute("data-status"));
  }).observe(conn, {attributes: true, attributeFilter: ["data-status"]});
});
"""


def wait_for_job(site: Stack, job_id: str, state: str, timeout: float = 30) -> dict[str, Any]:
    """Block until the JSON API reports ``state`` for the job."""
    return wait_until(lambda: (s := site.job_state(job_id))["state"] == state and s,
                      timeout=timeout, what=f"job {job_id} to be {state}")


def expect_final(page: Page) -> None:
    """The page shows 100 % and "succeeded", and has stopped listening."""
    expect(page.locator("#state")).to_have_text("succeeded")
    expect(page.locator("#progress-span")).to_have_text("100")
    expect(page.locator("#progress-bar")).to_have_js_property("value", 100)
    expect(page.locator("#job")).to_have_attribute("data-state", "succeeded")


def test_start_button_runs_a_job_to_100_and_succeeded(site: Stack, page: Page,
                                                       paused_worker: Callable[[], None]) -> None:
    page.add_init_script(RECORD_STATES)
    page.goto(site.url + "/")
    page.get_by_role("button", name="Start a new job").click()
    page.wait_for_url(JOB_URL)
    page.evaluate("window.__sameDocument = true")
    # The job waits in the queue, so the page must be live (not polling) before it runs.
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    paused_worker()

    expect_final(page)
    expect(page.locator("#connection-text")).to_have_text(DONE_TEXT)
    expect(page.get_by_role("status")).to_contain_text("State: succeeded")
    expect(page.get_by_role("link", name="Start another job")).to_have_attribute("href", "/")
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    seen = page.evaluate("window.__seen")
    progress = [value for value, _ in seen]
    assert progress == sorted(progress), seen
    assert seen[0][1] in ("queued", "running"), seen
    assert any(state == "running" and 0 < value < 100 for value, state in seen), seen
    statuses = page.evaluate("window.__statuses")
    assert statuses[-1] == "done" and "live" in statuses, statuses
    assert "polling" not in statuses and "reconnecting" not in statuses, statuses


def test_finished_job_page_shows_the_final_state_at_once(site: Stack, page: Page) -> None:
    job_id = site.start_job()
    wait_for_job(site, job_id, "succeeded")
    sockets: list[str] = []
    page.on("request", lambda req: sockets.append(req.url) if SOCKET_IO.search(req.url) else None)

    page.goto(f"{site.url}/jobs/{job_id}")
    # Read right after load, no waiting: the server rendered the final state.
    assert page.locator("#state").text_content() == "succeeded"
    assert page.locator("#progress-span").text_content() == "100"
    assert page.locator("#connection-text").text_content() == DONE_TEXT
    page.wait_for_load_state("networkidle")
    assert sockets == [], "a finished job's page should not open a Socket.IO connection"


def test_an_older_state_handed_over_after_the_final_one_does_not_undo_it(
        site: Stack, page: Page, paused_worker: Callable[[], None]) -> None:
    """The connect handler joins the job's room, then reads and sends the state; a
    push to the room can overtake that read's answer. Both reach the client before
    the connect is acknowledged, and it hands them over in arrival order: here the
    final state first, then the older one (put there in the server's packets, over
    long-polling or the websocket, whichever carries them, as the race would)."""
    job_id = site.start_job()  # stays queued: the worker is stopped
    rewritten: list[str] = []

    def final_first(packets: list[str]) -> list[str]:
        sent = [i for i, packet in enumerate(packets) if packet.startswith(STATE_EVENT)]
        if not sent or rewritten:
            return packets
        event, state = json.loads(packets[sent[0]][len("42"):])
        assert state["state"] == "queued", state
        rewritten.append(job_id)
        final = "42" + json.dumps([event, dict(state, state="succeeded", progress=100)])
        return packets[:sent[0]] + [final] + packets[sent[0]:]

    def polling(route: Route) -> None:
        response = route.fetch()
        packets = response.text().split(PACKET_SEPARATOR)
        route.fulfill(response=response, body=PACKET_SEPARATOR.join(final_first(packets)))

    def websocket(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def to_page(message: str | bytes) -> None:
            for packet in final_first([message]) if isinstance(message, str) else [message]:
                ws.send(packet)

        ws.on_message(server.send)
        server.on_message(to_page)

    page.route(SOCKET_IO, polling)
    page.route_web_socket(SOCKET_IO, websocket)
    page.goto(f"{site.url}/jobs/{job_id}")
    expect(page.locator("#connection")).to_have_attribute("data-status", "done")
    assert rewritten == [job_id]
    expect(page.locator("#state")).to_have_text("succeeded")
    expect(page.locator("#progress-span")).to_have_text("100")
    expect(page.locator("#connection-text")).to_have_text(DONE_TEXT)
    page.unroute_all(behavior="ignoreErrors")  # a long-poll may still be out


def test_page_falls_back_to_polling_without_the_socketio_client(site: Stack,
                                                                page: Page) -> None:
    page.route("**/static/vendor/socket.io.min.js", lambda route: route.abort())
    polls: list[str] = []
    page.on("request", lambda req: polls.append(req.url) if "/api/jobs/" in req.url else None)
    job_id = site.start_job()

    page.goto(f"{site.url}/jobs/{job_id}")
    expect(page.locator("#connection-text")).to_contain_text(
        re.compile("checking every few seconds|" + DONE_TEXT))
    expect_final(page)
    # the state, and the log lines after the last one shown
    assert any(url.endswith(f"/api/jobs/{job_id}") for url in polls), polls
    assert all(url.endswith(f"/api/jobs/{job_id}") or f"/api/jobs/{job_id}/log?after=" in url
               for url in polls), polls
    expect(page.locator("#console > div")).to_have_count(10)  # the log came by polling too


def test_failure_message_is_shown_as_text(site: Stack, page: Page,
                                          paused_worker: Callable[[], None]) -> None:
    job_id = site.start_job()
    page.goto(f"{site.url}/jobs/{job_id}")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    expect(page.locator("#state")).to_have_text("queued")
    message = '<img src=x onerror="window.__pwned = 1">disk <b>full</b>'

    resp = site.report({"jobId": job_id, "progress": 30, "state": "failed", "message": message})
    assert resp.status_code == 204, resp.text
    expect(page.locator("#state")).to_have_text("failed")
    expect(page.locator("#message")).to_have_text(": " + message)
    expect(page.locator("#connection-text")).to_have_text(DONE_TEXT)
    assert page.locator("#job img, #job b").count() == 0
    assert page.evaluate("window.__pwned") is None


def test_without_javascript_the_page_refreshes_to_the_final_state(
        site: Stack, new_page: Callable[..., Page]) -> None:
    page = new_page(java_script_enabled=False)
    loads: list[str] = []
    page.on("request", lambda req: loads.append(req.url) if req.is_navigation_request() else None)
    job_id = site.start_job()

    first = page.goto(f"{site.url}/jobs/{job_id}")
    assert first is not None
    initial = re.search(r'<strong id="state">(\w+)</strong>', first.text())
    assert initial and initial[1] in ("queued", "running"), first.text()
    expect_final(page)
    assert len(loads) >= 2, f"expected <noscript> refreshes, saw {loads}"
    # Once final, the page stops refreshing itself.
    assert page.locator('meta[http-equiv="refresh"]').count() == 0


def test_web_restart_mid_job_reconnects_and_catches_up(slow_site: Stack, page: Page) -> None:
    site = slow_site
    page.goto(site.url + "/")
    page.get_by_role("button", name="Start a new job").click()
    page.wait_for_url(JOB_URL)
    job_id = page.url.rsplit("/", 1)[1]
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    # (not page.wait_for_function: the site's CSP forbids the eval it polls with)
    wait_until(lambda: int(page.locator("#progress-span").text_content() or 0) >= 20,
               timeout=30, interval=0.05, what="progress 20")

    site.web.stop()
    expect(page.locator("#connection-text")).to_have_text(re.compile("^reconnecting…"))
    expect(page.locator("#connection")).to_have_attribute("data-status", "reconnecting")

    # Hold the page's reconnection attempts (and its polling meanwhile) back
    # until the job has ended, so the page can only learn the final state from
    # what it is sent on reconnect.
    page.route(SOCKET_IO, lambda route: route.abort())
    page.route(STATE_URL, lambda route: route.abort())
    site.web = start_web(site.env, site.log_dir)
    shown_while_blocked: list[str] = []

    def job_done_while_page_waits() -> bool:
        shown_while_blocked.append(page.locator("#progress-span").text_content() or "")
        return bool(site.job_state(job_id)["state"] == "succeeded")

    wait_until(job_done_while_page_waits, timeout=60, interval=0.2, what="job to succeed")
    assert page.locator("#state").text_content() == "running"
    assert int(shown_while_blocked[-1]) < 100, shown_while_blocked
    expect(page.locator("#connection")).to_have_attribute("data-status", "reconnecting")

    page.unroute(STATE_URL)
    page.unroute(SOCKET_IO)
    expect_final(page)
    expect(page.locator("#connection-text")).to_have_text(DONE_TEXT)
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"



def test_light_and_dark_colour_schemes(site: Stack, new_page: Callable[..., Page]) -> None:
    backgrounds = {}
    for scheme in ("light", "dark"):
        page = new_page(color_scheme=scheme)
        page.goto(site.url + "/")
        backgrounds[scheme] = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert backgrounds == {"light": "rgb(255, 255, 255)", "dark": "rgb(13, 17, 23)"}
