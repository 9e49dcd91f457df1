"""A Redis failover under a running stack loses nothing (issue 29, section 2).

Debian's ``redis-server`` and ``redis-sentinel`` on free ports: one master, one
replica, three Sentinels (a password on the Redis servers and another on the
Sentinels). The site, two RQ workers and the tick run on the Sentinel
``REDIS_URL`` (the message queue too), python-socketio clients watch every job,
an external worker long-polls for claims and a prober reads the site all along.
A real browser (Debian's Chromium, as in ``tests/e2e``) watches one job's page.
The master is SIGKILLed while jobs run and report; then every job ends in its
final state with its whole log once, the watchers get it, the page shows it and
every log line once, in order (without a reload), the external worker's next
claim works, and nothing answered 500. ``make sentinel`` (part of ``make test``)
installs the two servers and ``make browser`` Chromium; without them the test
skips, unless ``REQUIRE_BROWSER`` is set (CI), where it fails.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.e2e.browser import system_chromium
from tests.support import (
    TEST_WORKER_TOKEN,
    EventRecorder,
    Process,
    auth,
    final_state_received,
    free_port,
    simulate_work,
    stack_env,
    start_web,
    start_worker,
    wait_until,
)

SERVICE = "jobcast-main"
PASSWORD = "redis-pass:@/,"  # characters a URL must quote
SENTINEL_PASSWORD = "sentinel-pass"
STEPS = 16
STEP_DELAY = 0.25  # seconds: a demo job runs about 4 s
PAGE_TIMEOUT_MS = 20_000  # how long the page may take to show one expected thing

pytestmark = [
    pytest.mark.failover,
    pytest.mark.skipif(
        not (shutil.which("redis-sentinel") and shutil.which("redis-server"))
        and not os.environ.get("REQUIRE_BROWSER"),
        reason="Debian's redis-server and redis-sentinel are not installed (make sentinel)"),
]


class SentinelCluster:
    """One master, one replica, three Sentinels (quorum 2), all on loopback."""

    def __init__(self, log_dir: Path, data_dir: Path) -> None:
        self.ports = [free_port(), free_port()]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.servers = []
        for index, port in enumerate(self.ports):
            where = data_dir / f"redis-{index}"
            where.mkdir(parents=True)
            args = [shutil.which("redis-server") or "redis-server", "--port", str(port),
                    "--bind", "127.0.0.1", "--dir", str(where), "--save", "",
                    "--appendonly", "no", "--requirepass", PASSWORD, "--masterauth", PASSWORD]
            if index:
                args += ["--replicaof", "127.0.0.1", str(self.ports[0])]
            self.servers.append(Process(f"redis-{['master', 'replica'][index]}-{port}", args,
                                        dict(os.environ), log_dir))
        self.sentinels = []
        for port in self.sentinel_ports:
            conf = data_dir / f"sentinel-{port}.conf"  # Sentinel rewrites it: one each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {data_dir}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.ports[0]} 2\n"
                f'sentinel auth-pass {SERVICE} "{PASSWORD}"\n'
                f"sentinel down-after-milliseconds {SERVICE} 500\n"
                f"sentinel failover-timeout {SERVICE} 3000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
                f"requirepass {SENTINEL_PASSWORD}\nsentinel sentinel-pass {SENTINEL_PASSWORD}\n")
            self.sentinels.append(Process(
                f"sentinel-{port}", [shutil.which("redis-sentinel") or "redis-sentinel",
                                     str(conf)], dict(os.environ), log_dir))

    @property
    def url(self) -> str:
        """The Sentinel ``REDIS_URL`` of the stack."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        quoted = requests.utils.quote(PASSWORD, safe="")
        return (f"redis+sentinel://:{quoted}@{hosts}/{SERVICE}/0"
                f"?sentinel_password={SENTINEL_PASSWORD}")

    def sentinel(self, index: int = 0) -> redis.Redis:
        """A client on one Sentinel."""
        return redis.Redis(port=self.sentinel_ports[index], password=SENTINEL_PASSWORD,
                           decode_responses=True, socket_timeout=1)

    def master_port(self) -> int:
        """The master's port as every Sentinel sees it (0 while they disagree)."""
        seen = set()
        for index in range(3):
            client = self.sentinel(index)
            try:
                seen.add(int(client.sentinel_get_master_addr_by_name(SERVICE)[1]))
            finally:
                client.close()
        return seen.pop() if len(seen) == 1 else 0

    def ready(self) -> bool:
        """The replica is in sync and every Sentinel knows it and the other two."""
        replica = redis.Redis(port=self.ports[1], password=PASSWORD, decode_responses=True)
        try:
            if replica.info("replication").get("master_link_status") != "up":
                return False
        finally:
            replica.close()
        for index in range(3):
            client = self.sentinel(index)
            try:
                state = client.sentinel_master(SERVICE)
                if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                    return False
            finally:
                client.close()
        return True

    def start(self) -> SentinelCluster:
        """Start everything and wait until a failover could happen."""
        for proc in (*self.servers, *self.sentinels):
            proc.start()
        wait_until(self.ready, timeout=30, interval=0.2, what="the replica and 3 Sentinels")
        return self

    def stop(self) -> None:
        """Stop whatever still runs."""
        for proc in (*self.sentinels, *self.servers):
            proc.stop()


@dataclass
class Prober:
    """Reads the site all along (a job's state, its page, a start): every answer's
    status, and whether each 503 said when to come back."""

    base: str
    job_id: str
    answers: list[tuple[str, int, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Probe until stopped."""
        session = requests.Session()
        while not self.stop.wait(0.05):
            for method, path in (("GET", f"/api/jobs/{self.job_id}"),
                                 ("GET", f"/jobs/{self.job_id}"),
                                 ("GET", f"/api/jobs/{self.job_id}/log")):
                try:
                    resp = session.request(method, self.base + path, timeout=10)
                except requests.RequestException as exc:
                    self.answers.append((path, 0, repr(exc)))
                    continue
                self.answers.append((path, resp.status_code, resp.headers.get("Retry-After")))


@dataclass
class ExternalWorker:
    """An external worker: claims with a long poll, reports each job's steps with a log
    line each, retrying a report until the site takes it (as examples/ do)."""

    base: str
    claims: list[int] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def report(self, session: requests.Session, token: str, body: dict[str, Any]) -> None:
        """POST one report until it is answered (a 503 or no answer: again)."""
        while not self.stop.is_set():
            try:
                resp = session.post(self.base + "/api/progress", json=body, headers=auth(token),
                                    timeout=10)
            except requests.RequestException:
                self.stop.wait(0.2)
                continue
            if resp.status_code != 503:
                assert resp.status_code == 204, resp.text
                return
            self.stop.wait(float(resp.headers.get("Retry-After", "1")) / 4)

    def run(self) -> None:
        """Claim and work until stopped."""
        session = requests.Session()
        while not self.stop.is_set():
            try:
                resp = session.post(self.base + "/api/workers/claim", headers=auth(TEST_WORKER_TOKEN),
                                    json={"kinds": ["external"], "worker": "ext-1", "wait": 3},
                                    timeout=15)
            except requests.RequestException:
                self.claims.append(0)
                self.stop.wait(0.2)
                continue
            self.claims.append(resp.status_code)
            if resp.status_code != 200:
                self.stop.wait(0.2 if resp.status_code == 503 else 0)
                continue
            job = resp.json()
            seq = int(time.time() * 1_000_000)
            for step in range(1, STEPS + 1):
                simulate_work(STEP_DELAY)  # an external job's work
                seq += 1
                self.report(session, job["token"], {
                    "jobId": job["jobId"], "state": "running", "current": step, "total": STEPS,
                    "log": [f"step {step} of {STEPS} done"], "seq": seq})
            self.report(session, job["token"], {"jobId": job["jobId"], "state": "succeeded",
                                                "result": {"steps": STEPS}, "seq": seq + 1})
            self.done.append(job["jobId"])


def start_job(base: str, kind: str) -> str:
    """Start a job of ``kind`` with ``STEPS`` steps, as a client does: again after a 503
    (a failover under way; connections the promotion closed)."""
    args = {"steps": STEPS} if kind == "demo" else {"n": STEPS}

    def started() -> requests.Response | None:
        resp = requests.post(base + "/api/jobs", json={"kind": kind, "args": args}, timeout=10)
        if resp.status_code == 503:
            assert resp.headers["Retry-After"] and resp.json()["error"], resp.text
            return None
        assert resp.status_code == 202, resp.text
        return resp

    return str(wait_until(started, timeout=20, interval=0.2, what=f"a {kind} job").json()["id"])


def log_lines(base: str, job_id: str) -> list[str]:
    """The texts of the job's whole log."""
    resp = requests.get(f"{base}/api/jobs/{job_id}/log", timeout=10)
    assert resp.status_code == 200, resp.text
    return [line["text"] for line in resp.json()["lines"]]


@pytest.fixture
def cluster(log_dir: Path, tmp_path: Path) -> Iterator[SentinelCluster]:
    """A running master, replica and three Sentinels."""
    if not shutil.which("redis-sentinel"):
        pytest.fail("REQUIRE_BROWSER is set but redis-sentinel is not installed (make sentinel)")
    running = SentinelCluster(log_dir, tmp_path).start()
    yield running
    running.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, launched as the e2e tests do (``tests/e2e/browser.py``)."""
    with system_chromium(PAGE_TIMEOUT_MS) as chromium:
        yield chromium


def watch_page(browser: Any, base: str, job_id: str) -> Any:
    """The job's page, live (connected over Socket.IO), marked to tell a reload."""
    from playwright.sync_api import expect

    page = browser.new_context(viewport={"width": 1000, "height": 700}).new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(f"{base}/jobs/{job_id}")
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#connection")).to_have_attribute("data-status", "live")
    return page


def page_shows_the_end(page: Any, lines: list[str], log_dir: Path) -> None:
    """The page shows the final state and every log line once, in order, unreloaded."""
    from playwright.sync_api import expect

    try:
        expect(page.locator("#job")).to_have_attribute("data-state", "succeeded")
        expect(page.locator("#progress-span")).to_have_text("100")
        console = page.locator("#console > div[data-id]")
        expect(console).to_have_count(len(lines))  # the end's catch-up read may come last
        assert console.all_text_contents() == lines
        ids = [console.nth(n).get_attribute("data-id") for n in range(len(lines))]
        assert len(set(ids)) == len(ids), ids
        assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    except AssertionError:
        page.screenshot(path=str(log_dir / "failover-page.png"), full_page=True)
        raise


def test_a_failover_under_running_jobs_loses_nothing(cluster: SentinelCluster, browser: Any,
                                                      log_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = stack_env(cluster.url, port, SOCKETIO_MESSAGE_QUEUE=cluster.url,
                    DEMO_STEP_DELAY=str(STEP_DELAY),
                    REDIS_RETRY_SECONDS="60", ACCESS_LOG="1", LOG_LEVEL="INFO")
    procs: list[Process] = []
    threads: list[threading.Thread] = []
    watchers: dict[str, EventRecorder] = {}
    stoppers: list[threading.Event] = []
    try:
        procs.append(start_web(env, log_dir, name="web-failover"))
        base = env["SITE_URL"]
        procs += [start_worker(env, log_dir, name=f"worker-failover-{n}") for n in (1, 2)]
        procs.append(Process("tick-failover", [sys.executable, "-m", "worker.cron",
                                               "--interval", "0.2"], env, log_dir).start())
        external = ExternalWorker(base)
        jobs = [start_job(base, "demo"), start_job(base, "demo"), start_job(base, "external")]
        prober = Prober(base, jobs[0])
        for job_id in jobs:
            watchers[job_id] = EventRecorder(base, job_id)
        page = watch_page(browser, base, jobs[0])  # a browser watches the first demo job
        for worker in (external, prober):
            stoppers.append(worker.stop)
            threads.append(threading.Thread(target=worker.run, daemon=True))
            threads[-1].start()

        # Kill the master while all three jobs run and report.
        for job_id in jobs:
            wait_until(lambda j=job_id: requests.get(f"{base}/api/jobs/{j}", timeout=5)
                       .json()["current"] >= 3, timeout=20, what=f"job {job_id} running")
        master, replica = cluster.servers
        master.kill()
        killed_at = time.monotonic()
        wait_until(lambda: cluster.master_port() == cluster.ports[1], timeout=20, interval=0.1,
                   what="the Sentinels to promote the replica")
        failover_s = time.monotonic() - killed_at
        # Jobs started meanwhile and after: a demo one, and the external worker's next claim.
        jobs += [start_job(base, "demo"), start_job(base, "external")]
        for job_id in jobs[3:]:
            watchers[job_id] = EventRecorder(base, job_id)

        every_line = [f"step {n} of {STEPS} done" for n in range(1, STEPS + 1)]
        for job_id in jobs:
            wait_until(lambda j=job_id: requests.get(f"{base}/api/jobs/{j}", timeout=5)
                       .json()["state"] == "succeeded", timeout=40, interval=0.1,
                       what=f"job {job_id} to succeed")
            assert log_lines(base, job_id) == every_line, job_id
            watchers[job_id].wait_for(final_state_received(), timeout=10,
                                      what=f"the watcher of {job_id} to see the end")
        page_shows_the_end(page, every_line, log_dir)
        assert external.done == [jobs[2], jobs[4]]
        assert 200 in external.claims[external.claims.index(200) + 1:], external.claims
        # Read before the processes stop: an RQ worker stopped while idle may log a
        # traceback of its own (its signal handler interrupts the blocking pop).
        logs = "".join(proc.log_tail(10**7) for proc in procs)
    finally:
        for stop in stoppers:
            stop.set()
        for thread in threads:
            thread.join(20)
        for recorder in watchers.values():
            recorder.close()
        for proc in reversed(procs):  # what they do now is not under test: no waiting
            proc.kill()

    statuses = {status for _path, status, _retry in prober.answers}
    assert statuses <= {200, 503}, prober.answers
    assert all(retry for _path, status, retry in prober.answers if status == 503)
    assert set(external.claims) <= {200, 204, 503}, external.claims
    for bad in ("Traceback", "Exception on", '" 500 '):
        assert bad not in logs, f"{bad!r} in the logs (in {log_dir})"
    # the prober did see the outage (about 2 s here), and the site answered 503 for it
    assert 503 in statuses and failover_s < 20, (failover_s, prober.answers)
