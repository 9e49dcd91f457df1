"""The site behind a real nginx (Debian's), configured by deploy/nginx.conf.template.

nginx (no daemon, its pid, logs and temp files in a tmp dir) listens on a free
port in front of TWO gunicorn web instances (``ip_hash``) that share Redis and
the Socket.IO message queue, with ``TRUSTED_PROXIES=1``; one RQ worker reports
directly to the instance that nginx does NOT pick for 127.0.0.1, so every event
reaches the test's clients through the message queue. Checked through nginx: a python-socketio client on
a websocket sees a job reach 100; the browser's job flow works; clients on
127.0.0.2 and 127.0.0.3 have separate rate limits that a forged
X-Forwarded-For cannot escape.

Skips only when nginx is missing and REQUIRE_BROWSER is unset (``make test``
installs nginx, CI sets REQUIRE_BROWSER=1 and so must run it).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.e2e.browser import MISSING_REASON, browser_required, find_chromium, launch
from tests.support import (
    ROOT,
    EventRecorder,
    Process,
    RedisServer,
    final_state_received,
    free_port,
    stack_env,
    start_job,
    start_web,
    start_worker,
    wait_until,
)

TEMPLATE = ROOT / "deploy" / "nginx.conf.template"
DOC = ROOT / "docs" / "deploying.md"
RATE = "3/60"  # per client, long enough that no window ends during a test
JOB_URL = re.compile(r"/jobs/[0-9a-f-]{36}$")

# Only what the test needs around the template: nginx's own files in a tmp dir.
MAIN_CONF = """\
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    log_format upstream '$remote_addr "$request" $status upstream=$upstream_addr';
    access_log {prefix}/access.log upstream;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    include {site};
}}
"""


def find_nginx() -> str | None:
    """The nginx binary (NGINX_PATH, PATH, or Debian's /usr/sbin/nginx)."""
    for candidate in (os.environ.get("NGINX_PATH"), shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def render(template: str, listen: str, web_servers: list[str]) -> str:
    """The template with its placeholders filled in."""
    servers = "\n    ".join(f"server {server};" for server in web_servers)
    text = template.replace("{{ listen }}", listen).replace("{{ web_servers }}", servers)
    assert "{{" not in text, "a placeholder of the template was left unfilled"
    return text


@dataclass
class Proxied:
    """nginx in front of two web instances and a worker."""

    url: str
    host: str
    port: int
    nginx: Process
    access_log: Path
    client_instance: str  # the web instance (host:port) nginx picks for 127.0.0.1
    worker_instance: str  # the one the worker reports to


@pytest.fixture(scope="module")
def proxied(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """Redis, two gunicorn instances, a worker and nginx, all real processes."""
    nginx_bin = find_nginx()
    if nginx_bin is None:
        reason = "nginx not found (`make nginx` installs it as root on Debian)"
        if browser_required():
            pytest.fail(reason + ": required (REQUIRE_BROWSER=1)", pytrace=False)
        pytest.skip(reason)
    server = RedisServer(log_dir, tmp_path_factory.mktemp("nginx-redis")).start()
    procs: list[Process] = [server]
    # nginx's workers run as an unprivileged user when started as root: a prefix
    # directory they can enter (pytest's tmp dirs are private to root).
    prefix = Path(tempfile.mkdtemp(prefix="jobcast-nginx-"))
    try:
        prefix.chmod(0o755)
        (prefix / "tmp").mkdir()
        common = {"SOCKETIO_MESSAGE_QUEUE": server.url, "TRUSTED_PROXIES": "1",
                  "RATE_LIMIT": RATE, "DEMO_STEP_DELAY": "0.3"}
        envs = [stack_env(server.url, free_port(), **common) for _ in range(2)]
        for name, env in zip(("web-a", "web-b"), envs, strict=True):
            procs.append(start_web(env, log_dir, name=f"nginx-{name}"))
        port = free_port()
        site = prefix / "jobcast.conf"
        site.write_text(render(TEMPLATE.read_text(), f"127.0.0.1:{port}",
                               [env["WEB_BIND"] for env in envs]))
        conf = prefix / "nginx.conf"
        conf.write_text(MAIN_CONF.format(prefix=prefix, site=site))
        nginx = Process("nginx", [nginx_bin, "-p", str(prefix), "-c", str(conf)],
                        dict(os.environ), log_dir)
        nginx.start()
        procs.append(nginx)
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            if not nginx.alive():
                raise RuntimeError(nginx.log_tail() + (prefix / "error.log").read_text())
            return requests.get(url + "/", timeout=2).status_code == 200

        wait_until(answers, timeout=20, what=f"nginx at {url}")
        # nginx logs a request after it has answered it: wait for the line
        served = wait_until(lambda: re.findall(r"upstream=(\S+)", (prefix / "access.log").read_text()),
                            what="nginx's access log line of that request")
        client_instance = served[-1]
        other = [env for env in envs if env["WEB_BIND"] != client_instance]
        assert len(other) == 1, (served, [env["WEB_BIND"] for env in envs])
        procs.append(start_worker(other[0], log_dir, name="nginx-worker"))
        yield Proxied(url, "127.0.0.1", port, nginx, prefix / "access.log",
                      client_instance, other[0]["WEB_BIND"])
    finally:
        for proc in reversed(procs):
            proc.stop()
        for log_name in ("error.log", "access.log"):
            if (prefix / log_name).exists():
                shutil.copy(prefix / log_name, log_dir / f"nginx-{log_name}")
        shutil.rmtree(prefix, ignore_errors=True)


def test_a_job_reaches_100_for_a_socketio_client_on_a_websocket_through_nginx(
        proxied: Proxied) -> None:
    job_id = start_job(proxied.url)
    recorder = EventRecorder(proxied.url, job_id, transports=["websocket"])
    try:
        assert recorder.client.transport() == "websocket"
        recorder.wait_for(final_state_received(), timeout=30, what="the job's final state")
        updates = recorder.payloads("updateProgress")
    finally:
        recorder.close()
    assert updates[-1]["state"] == "succeeded" and updates[-1]["progress"] == 100
    assert len(updates) >= 2, "no live update came through nginx, only the final state"
    # the websocket really went through nginx (it logged the upgrade, 101) to the
    # instance the worker does not report to: the events came by the message queue
    # (logged once the websocket has closed, after nginx answered it)
    upgrades = wait_until(lambda: re.findall(
        r'"GET /socket\.io/\?[^"]*transport=websocket[^"]*" 101 upstream=(\S+)',
        proxied.access_log.read_text()), what="nginx's log line of the websocket")
    assert set(upgrades) == {proxied.client_instance}
    assert proxied.client_instance != proxied.worker_instance


def test_the_browser_job_flow_works_through_nginx(proxied: Proxied) -> None:
    executable = find_chromium()
    if executable is None:
        if browser_required():
            pytest.fail(MISSING_REASON.replace("skipped", "required (REQUIRE_BROWSER=1)"),
                        pytrace=False)
        pytest.skip(MISSING_REASON)
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright, executable)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            sockets: list[str] = []
            page.on("websocket", lambda ws: sockets.append(ws.url))
            page.goto(proxied.url + "/")
            page.get_by_role("button", name="Start a new job").click()
            page.wait_for_url(JOB_URL)
            expect(page.locator("#state")).to_have_text("succeeded", timeout=30_000)
            expect(page.locator("#progress-span")).to_have_text("100")
            expect(page.locator("#progress-bar")).to_have_js_property("value", 100)
            assert any(url.startswith(f"ws://127.0.0.1:{proxied.port}/socket.io/")
                       for url in sockets), sockets
        finally:
            browser.close()


def post_job_from(proxied: Proxied, source: str, headers: dict[str, str] | None = None
                  ) -> int:
    """POST /api/jobs through nginx from a socket bound to ``source``; the status."""
    conn = http.client.HTTPConnection(proxied.host, proxied.port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request("POST", "/api/jobs", headers=headers or {})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_clients_behind_nginx_have_separate_limits(proxied: Proxied) -> None:
    assert [post_job_from(proxied, "127.0.0.2") for _ in range(3)] == [202] * 3
    assert post_job_from(proxied, "127.0.0.2") == 429
    # a forged X-Forwarded-For does not give the client a fresh budget
    assert post_job_from(proxied, "127.0.0.2", {"X-Forwarded-For": "198.51.100.7"}) == 429
    # the other client is counted apart (without TRUSTED_PROXIES both were nginx)
    assert post_job_from(proxied, "127.0.0.3") == 202


def test_the_deploying_doc_shows_the_template_as_it_is() -> None:
    blocks = re.findall(r"```nginx\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks == [TEMPLATE.read_text()]
    assert "deploy/nginx.conf.template" in DOC.read_text()


def test_render_fills_every_placeholder() -> None:
    text = render(TEMPLATE.read_text(), "8080", ["10.0.0.1:5000", "10.0.0.2:5000"])
    assert "listen 8080;" in text
    assert "server 10.0.0.1:5000;\n    server 10.0.0.2:5000;" in text
