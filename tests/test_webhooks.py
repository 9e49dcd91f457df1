"""Completion webhooks: allowed hosts and refusals, a real delivery by the webhooks
worker to a local receiver (signed, retried with backoff, state in the job's JSON),
and https to the checked address under the URL's name. The attacks (rebinding,
IPv4 inside IPv6, tarpits, the queue, who sees the state): test_attacks_webhooks.py."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from urllib3.exceptions import SSLError

from shared.webhooks import WebhookRefused, check_url, target
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import auth, free_port, start_worker, wait_until
from worker.deliver import send

SECRET = "test-webhook-secret"


@pytest.mark.parametrize("url, allowed", [
    ("https://hooks.example.com/x", ["hooks.example.com"]),
    ("http://127.0.0.1:9/x", ["127.0.0.1"]),  # loopback, listed by name
    ("http://LOCALHOST/x", ["localhost"]),
])
def test_allowed_webhooks(url: str, allowed: list[str]) -> None:
    assert check_url(url, allowed) == url


@pytest.mark.parametrize("url, allowed, why", [
    ("https://evil.example.com/x", ["hooks.example.com"], "not in WEBHOOK_ALLOWED_HOSTS"),
    ("http://127.0.0.1/x", ["*"], "private or loopback"),
    ("http://10.1.2.3/x", ["*"], "private or loopback"),
    ("http://[::1]/x", ["*"], "private or loopback"),
    ("http://[::ffff:127.0.0.1]/x", ["*"], "private or loopback"),
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x", ["*"], "private or loopback"),  # Teredo
    ("http://169.254.169.254/latest", ["*"], "private or loopback"),
    ("http://localhost/x", ["*"], "private or loopback"),
    ("ftp://hooks.example.com/x", ["*"], "http or https"),
    ("https://user:pw@hooks.example.com/x", ["hooks.example.com"], "user name"),
    ("https:///x", ["*"], "with a host"),
    (42, ["*"], "http(s) URL"),
    ("http://h:99999/x", ["h"], "not a URL"),
])
def test_refused_webhooks(url: Any, allowed: list[str], why: str) -> None:
    with pytest.raises(WebhookRefused, match=why.replace("(", r"\(").replace(")", r"\)")):
        check_url(url, allowed)


def test_a_refused_webhook_is_400_and_starts_nothing(client: FlaskClient) -> None:
    client.application.config["WEBHOOK_SECRET"] = SECRET
    client.application.config["WEBHOOK_ALLOWED_HOSTS"] = ("hooks.example.com",)
    resp = client.post("/api/jobs", json={"kind": "demo", "webhook": "http://10.0.0.1/x"})
    assert resp.status_code == 400 and "webhook" in resp.get_json()["fields"]
    assert client.get("/api/kinds").status_code == 200
    assert client.application.extensions["jobcast.core"].lifecycle.store.recent_count() == 0


def test_webhooks_are_off_without_a_secret(client: FlaskClient) -> None:
    resp = client.post("/api/jobs", json={"webhook": "https://hooks.example.com/x"})
    assert resp.status_code == 400 and "WEBHOOK_SECRET" in resp.get_json()["error"]


class Receiver:
    """A local HTTP receiver answering the given statuses in turn (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hook_stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with the webhooks worker (``python -m worker --webhooks``) beside it."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("hook-redis"), WEBHOOK_SECRET=SECRET,
                          WEBHOOK_ALLOWED_HOSTS="127.0.0.1", WEBHOOK_BACKOFF="1,1",
                          LEASE_SECONDS="2", MAX_ATTEMPTS="1")
    try:
        hooks = start_worker(running.env, log_dir, name="hooks-webhooks", args=["--webhooks"])
    except RuntimeError:
        stop_stack(running)
        raise
    yield running
    hooks.stop()
    stop_stack(running)


def owner_state(stack: Stack, job_id: str, token: str) -> dict[str, Any]:
    """The job's JSON as its owner reads it (its ``controlToken``): with the webhook."""
    resp = requests.get(f"{stack.url}/api/jobs/{job_id}", headers=auth(token), timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_the_worker_delivers_a_signed_webhook_retrying_after_a_failure(
        hook_stack: Stack) -> None:
    receiver = Receiver([500])
    try:
        resp = requests.post(hook_stack.url + "/api/jobs", timeout=5, json={
            "kind": "demo", "args": {"steps": 2},
            "webhook": f"http://127.0.0.1:{receiver.port}/done"})
        assert resp.status_code == 202, resp.text
        job_id, token = resp.json()["id"], resp.json()["controlToken"]
        wait_until(lambda: len(receiver.received) == 2, timeout=30, what="a retried delivery")
        state = wait_until(lambda: (s := owner_state(hook_stack, job_id, token)).get(
            "webhook", {}).get("state") == "delivered" and s, timeout=10,
            what="the delivery state")
    finally:
        receiver.close()
    assert state["webhook"] == {"state": "delivered", "attempts": 2, "lastStatus": 200}
    (first_headers, first), (headers, body) = receiver.received
    assert first == body and first_headers["X-Jobcast-Delivery"] == headers["X-Jobcast-Delivery"]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Jobcast-Signature"], expected)
    sent = json.loads(body)
    assert sent["jobId"] == job_id and sent["kind"] == "demo" and sent["state"] == "succeeded"
    assert sent["result"] == {"steps": 2} and sent["finishedAt"].endswith("Z")
    assert 0 < time.time() - datetime.fromisoformat(sent["finishedAt"]).timestamp() < 60
    assert headers["User-Agent"].startswith("jobcast-webhook")


def test_an_external_job_that_fails_by_lease_calls_its_webhook(hook_stack: Stack) -> None:
    receiver = Receiver([])
    try:
        resp = requests.post(hook_stack.url + "/api/jobs", timeout=5, json={
            "kind": "external", "args": {}, "webhook": f"http://127.0.0.1:{receiver.port}/"})
        job_id = resp.json()["id"]
        claimed = requests.post(hook_stack.url + "/api/workers/claim", timeout=5, json={
            "kinds": ["external"], "worker": "gone"},
            headers={"Authorization": "Bearer test-worker-token"})
        assert claimed.json()["jobId"] == job_id
        wait_until(lambda: receiver.received, timeout=20, what="the webhook")
    finally:
        receiver.close()
    sent = json.loads(receiver.received[0][1])
    assert sent["state"] == "failed" and "lease lapsed" in sent["message"]


def test_https_goes_to_the_checked_address_with_the_urls_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The delivery connects to the address it resolved, yet TLS sends the URL's host
    (SNI) and checks the certificate against it, and ``Host`` is the URL's."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.pinned.test",
                    "-addext", "subjectAltName=DNS:hooks.pinned.test"],
                   check=True, capture_output=True)
    receiver = Receiver([])
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment, misc]
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *args, **kwargs: real(
        "127.0.0.1" if host in ("hooks.pinned.test", "other.pinned.test") else host,
        *args, **kwargs))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    try:
        where = target(f"https://hooks.pinned.test:{receiver.port}/in?x=1", ["hooks.pinned.test"])
        status = send(where, b"{}", {"Content-Length": "2"})
        wrong = target(f"https://other.pinned.test:{receiver.port}/", ["other.pinned.test"])
        with pytest.raises(SSLError, match="other.pinned.test"):
            send(wrong, b"{}", {})
    finally:
        receiver.close()
    assert where.addresses == ("127.0.0.1",) and status == 200
    assert names[0] == "hooks.pinned.test"
    assert receiver.received[0][0]["Host"] == f"hooks.pinned.test:{receiver.port}"
    assert len(receiver.received) == 1
