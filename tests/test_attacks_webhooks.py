"""Issue #26, part 4: attacks through completion webhooks, each against real servers.

* DNS rebinding: a name that answers a public address to the delivery's check
  and 127.0.0.1 after it must not reach 127.0.0.1 (the delivery runs in this
  process, with ``socket.getaddrinfo`` answering as such a name's DNS would).
* IPv6 forms that embed IPv4 (``::ffff:``, IPv4-compatible, NAT64, 6to4)
  are refused when the job is submitted and when a name resolves to one
  at delivery time.
* A tarpit receiver (one header line a second) is cut off at
  ``WEBHOOK_DEADLINE``.
* Deliveries do not wait for the job worker: a long user job on the only job
  worker does not delay them.
* A webhook's delivery state (``lastStatus``, a probe of what answers at the URL)
  shows to the job's owner and operators only.
"""

from __future__ import annotations

import _socket
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from flask.testing import FlaskClient

from shared import keys
from shared.protocol import new_id
from shared.webhooks import WebhookRefused, check_url
from tests.conftest import Stack, start_stack, stop_stack
from tests.support import (
    TEST_OPS_TOKEN,
    TEST_PROGRESS_TOKEN,
    auth,
    start_worker,
    wait_until,
)
from tests.test_webhooks import Receiver
from worker.deliver import DeliveryFailed, deliver

SECRET = "attack-webhook-secret"
DEADLINE = 3  # WEBHOOK_DEADLINE of the stack below
PUBLIC = "8.8.8.8"  # what the rebinding name answers first (never really connected to)
# IPv6 forms that carry 127.0.0.1 (or a public IPv4: refused all the same).
EMBEDDING = {
    "ipv4-compatible": "::127.0.0.1",
    "ipv4-mapped-public": "::ffff:8.8.8.8",
    "ipv4-translated": "::ffff:0:7f00:1",
    "nat64": "64:ff9b::7f00:1",
    "nat64-local": "64:ff9b:1::7f00:1",
    "6to4": "2002:7f00:1::",
}  # Teredo (2001::/32) was refused before #26 already: tests/test_webhooks.py


# -- in-process deliveries with a resolver that lies ------------------------------------


class FakeDns:
    """``socket.getaddrinfo`` for one name: ``answers`` in turn (the last one from then
    on); every other name and address resolves as usual. Connections to any address
    in ``blocked`` are refused here and recorded (nothing leaves this machine)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, answers: list[str],
                 blocked: set[str]) -> None:
        self.name, self.answers, self.blocked = name, answers, blocked
        self.lookups = 0
        self.tried: list[Any] = []
        self._real = socket.getaddrinfo

        def connect(sock: socket.socket, address: Any) -> None:
            if isinstance(address, tuple) and address[0] in self.blocked:
                self.tried.append(address[:2])
                raise ConnectionRefusedError("refused by the test")
            _socket.socket.connect(sock, address)

        monkeypatch.setattr(socket, "getaddrinfo", self.getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", connect)

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, bytes):
            host = host.decode()
        if isinstance(host, str) and host.rstrip(".").lower() == self.name:
            address = self.answers[min(self.lookups, len(self.answers) - 1)]
            self.lookups += 1
            return self._real(address, port, *args, **kwargs)
        return self._real(host, port, *args, **kwargs)


@pytest.fixture
def worker_env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The environment ``worker.deliver`` reads, for a delivery in this process."""
    for name, value in {"JOBCAST_ENV": "production", "REDIS_URL": redis_url,
                        "PROGRESS_TOKEN": TEST_PROGRESS_TOKEN, "WEBHOOK_SECRET": SECRET,
                        "WEBHOOK_ALLOWED_HOSTS": "*", "WEBHOOK_DEADLINE": "2"}.items():
        monkeypatch.setenv(name, value)
    return redis_url


def ended_job(redis_url: str, webhook: str) -> str:
    """A stored, succeeded job naming ``webhook``; its id."""
    job_id = new_id()
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.hset(keys.job_key(job_id), mapping={
        "state": "succeeded", "kind": "demo", "progress": "100", "created_at": "1",
        "updated_at": "2", "finished_at": "2", "webhook": webhook})
    client.close()
    return job_id


def run_delivery(job_id: str) -> str:
    """``worker.deliver.deliver`` as the webhooks worker runs it; its outcome."""
    try:
        return deliver(job_id, "delivery-1")
    except DeliveryFailed:
        return "failed"


def webhook_field(redis_url: str, job_id: str, field: str) -> str | None:
    """One ``webhook_*`` field of the job's hash."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return client.hget(keys.job_key(job_id), field)  # type: ignore[return-value]
    finally:
        client.close()


def test_a_name_that_rebinds_to_loopback_after_the_check_is_not_reached(
        worker_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The name answers a public address once, then 127.0.0.1: the delivery connects to
    the address it checked (refused here), never to the local receiver."""
    receiver = Receiver([])
    name = "rebind.jobcast.test"
    dns = FakeDns(monkeypatch, name, [PUBLIC, "127.0.0.1"], blocked={PUBLIC})
    try:
        job_id = ended_job(worker_env, f"http://{name}:{receiver.port}/hook")
        outcome = run_delivery(job_id)
    finally:
        receiver.close()
    assert receiver.received == [], "the delivery reached 127.0.0.1 after checking a public address"
    assert outcome == "failed"
    assert dns.tried == [(PUBLIC, receiver.port)] and dns.lookups == 1


@pytest.mark.parametrize("form", list(EMBEDDING))
def test_a_name_resolving_to_ipv4_inside_ipv6_is_refused_at_delivery(
        form: str, worker_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    address = EMBEDDING[form]
    dns = FakeDns(monkeypatch, "embedded.jobcast.test", [address], blocked={address})
    job_id = ended_job(worker_env, "http://embedded.jobcast.test:8080/hook")
    assert run_delivery(job_id) == "refused"
    assert webhook_field(worker_env, job_id, "webhook_state") == "refused"
    assert dns.tried == []


@pytest.mark.parametrize("form", list(EMBEDDING))
def test_ipv4_inside_ipv6_is_refused_at_submission(form: str, client: FlaskClient) -> None:
    url = f"http://[{EMBEDDING[form]}]:8080/hook"
    with pytest.raises(WebhookRefused, match="private or loopback"):
        check_url(url, ["*"])
    client.application.config.update(WEBHOOK_SECRET=SECRET, WEBHOOK_ALLOWED_HOSTS=("*",))
    resp = client.post("/api/jobs", json={"kind": "demo", "webhook": url})
    assert resp.status_code == 400 and "webhook" in resp.get_json()["fields"]


# -- the real stack: a job worker, the webhooks worker, local receivers -------------------


class Tarpit:
    """A receiver that reads the request, then sends a status line and one header line
    every ``every`` seconds for as long as the client stays (at most ``hold``)."""

    def __init__(self, every: float = 1.0, hold: float = 90.0) -> None:
        self.every, self.hold = every, hold
        self.opened: list[float] = []
        self.closed: list[float] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = int(self.server.getsockname()[1])
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _addr = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        opened = time.monotonic()
        self.opened.append(opened)
        conn.settimeout(self.every)
        with conn:
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                while time.monotonic() - opened < self.hold and not self._stop.is_set():
                    conn.sendall(b"X-Slow: 1\r\n")
                    try:
                        if conn.recv(4096) == b"":
                            break  # the client hung up
                    except TimeoutError:
                        continue
            except OSError:
                pass
            self.closed.append(time.monotonic())

    def close(self) -> None:
        self._stop.set()
        self.server.close()


@pytest.fixture(scope="module")
def hooks(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Redis, web, the only job worker, and the webhooks worker."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("attack-hooks-redis"),
                          WEBHOOK_SECRET=SECRET, WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
                          WEBHOOK_BACKOFF="60", WEBHOOK_DEADLINE=str(DEADLINE),
                          DEMO_STEP_DELAY="0.3")
    try:
        webhooks_worker = start_worker(running.env, log_dir, name="attack-webhooks",
                                       args=["--webhooks"])
    except RuntimeError:
        stop_stack(running)
        raise
    yield running
    webhooks_worker.stop()
    stop_stack(running)


def start(stack: Stack, body: dict[str, Any]) -> tuple[str, str]:
    """Start a job through the API without cookies; its id and ``controlToken``."""
    resp = requests.post(stack.url + "/api/jobs", json=body, timeout=5)
    assert resp.status_code == 202, resp.text
    return resp.json()["id"], resp.json()["controlToken"]


def read(stack: Stack, job_id: str, token: str | None = None) -> dict[str, Any]:
    """``GET /api/jobs/<id>``, with ``token`` as the bearer when given."""
    resp = requests.get(f"{stack.url}/api/jobs/{job_id}", timeout=5,
                        headers=auth(token) if token else {})
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def end_with_webhook(stack: Stack, url: str) -> tuple[str, str]:
    """An external job naming ``url``, cancelled by its owner at once (no job worker
    involved): its delivery is enqueued. Its id and ``controlToken``."""
    job_id, token = start(stack, {"kind": "external", "webhook": url})
    cancelled = requests.post(f"{stack.url}/api/jobs/{job_id}/cancel", headers=auth(token),
                              timeout=5)
    assert cancelled.status_code == 200, cancelled.text
    return job_id, token


def test_a_tarpit_receiver_is_cut_off_at_the_deadline(hooks: Stack) -> None:
    tarpit = Tarpit(every=1.0)
    try:
        job_id, token = end_with_webhook(hooks, f"http://127.0.0.1:{tarpit.port}/slow")
        wait_until(lambda: tarpit.closed, timeout=DEADLINE + 10,
                   what="the delivery to hang up on the tarpit")
        held = tarpit.closed[0] - tarpit.opened[0]
        state = wait_until(lambda: (s := read(hooks, job_id, token)["webhook"])["state"]
                           == "retrying" and s, timeout=5, what="the failed attempt recorded")
    finally:
        tarpit.close()
    assert held < DEADLINE + 2, f"the tarpit held the delivery {held:.1f} s"
    assert state == {"state": "retrying", "attempts": 1, "lastStatus": 0}


def test_a_long_user_job_on_the_only_job_worker_does_not_delay_a_delivery(
        hooks: Stack) -> None:
    busy, busy_token = start(hooks, {"kind": "demo", "args": {"steps": 100}})  # 30 s
    receiver = Receiver([])
    try:
        wait_until(lambda: read(hooks, busy)["state"] == "running", timeout=15,
                   what="the long job to occupy the job worker")
        end_with_webhook(hooks, f"http://127.0.0.1:{receiver.port}/done")
        wait_until(lambda: receiver.received, timeout=8,
                   what="the delivery while the job worker is busy")
        assert read(hooks, busy)["state"] == "running"
    finally:
        receiver.close()
        requests.post(f"{hooks.url}/api/jobs/{busy}/cancel", headers=auth(busy_token),
                      timeout=5)


def test_only_the_owner_and_operators_see_the_delivery(hooks: Stack) -> None:
    """``lastStatus`` says what answers at the URL (here a 404: a port that serves HTTP)."""
    receiver = Receiver([404])
    try:
        job_id, token = end_with_webhook(hooks, f"http://127.0.0.1:{receiver.port}/probe")
        owner = wait_until(lambda: (s := read(hooks, job_id, token).get("webhook")) and s[
            "lastStatus"] == 404 and s, timeout=15, what="the owner to see the 404")
    finally:
        receiver.close()
    other_job, other_token = start(hooks, {"kind": "external"})
    stranger = read(hooks, job_id)
    with_another_token = read(hooks, job_id, other_token)
    operator = read(hooks, job_id, TEST_OPS_TOKEN)
    assert owner == {"state": "retrying", "attempts": 1, "lastStatus": 404}
    assert "webhook" not in stranger and stranger["state"] == "cancelled"
    assert "webhook" not in with_another_token
    assert operator["webhook"] == owner
    requests.post(f"{hooks.url}/api/jobs/{other_job}/cancel", headers=auth(other_token),
                  timeout=5)
