"""The processes under test: one Redis, web A (alone), web B (message queue)
and web G (gevent).

Both web processes run ``bench.webapp:create_app()`` (the site plus a bare
endpoint) under gunicorn with eventlet, on free ports, started with the
helpers of ``tests/support.py``. Workers are started per measurement.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import redis

from shared.protocol import new_id
from shared.store import JobStore
from tests.support import (
    TEST_PROGRESS_TOKEN,
    Process,
    RedisServer,
    free_port,
    stack_env,
    start_web,
    start_worker,
)

ROOT_DIR = Path(__file__).resolve().parent.parent
WEB_APP = "bench.webapp:create_app()"
# Room for 10,000 idle Socket.IO connections plus HTTP headroom.
WORKER_CONNECTIONS = 11000
SOCKETIO_MAX_CONNECTIONS = 10500


class Web:
    """A running web process: its port, process and gunicorn worker."""

    def __init__(self, name: str, env: dict[str, str], proc: Process) -> None:
        self.name = name
        self.env = env
        self.proc = proc
        self.port = int(env["PORT"])
        self.url = env["SITE_URL"]

    def worker_process(self) -> psutil.Process:
        """gunicorn's (single) worker process, the one serving requests."""
        children = psutil.Process(self.proc.pid).children()
        if len(children) != 1:
            raise RuntimeError(f"{self.name}: expected one gunicorn worker, got {children}")
        return children[0]

    def rss(self) -> int:
        """Resident memory of the worker process, in bytes."""
        return int(self.worker_process().memory_info().rss)

    def post_progress(self, job_id: str, message: str, progress: int = 50) -> int:
        """One callback on a fresh connection; the status code."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", "/api/progress", body=json.dumps(
                {"jobId": job_id, "progress": progress, "state": "running",
                 "message": message}), headers={"Authorization": f"Bearer {TEST_PROGRESS_TOKEN}",
                                                "Content-Type": "application/json"})
            return conn.getresponse().status
        finally:
            conn.close()


class BenchStack:
    """Redis + web A (no message queue) + web B (Redis message queue) + web G (gevent)."""

    def __init__(self, log_dir: Path | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="jobcast-bench-")
        self.dir = Path(self._tmp.name)
        self.log_dir = log_dir or self.dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(self.log_dir, self.dir / "redis")
        self.webs: list[Web] = []
        self.client: redis.Redis | None = None

    def start(self) -> BenchStack:
        """Start Redis and the web processes."""
        self.redis.start()
        self.client = redis.Redis.from_url(self.redis.url, decode_responses=True)
        self.start_web("web-a")
        self.start_web("web-b", SOCKETIO_MESSAGE_QUEUE=self.redis.url)
        self.start_web("web-g", ASYNC_MODE="gevent")
        return self

    def start_web(self, name: str, **extra: str) -> Web:
        """Start one more web process on a free port (stopped with the stack)."""
        common = {"WORKER_CONNECTIONS": str(WORKER_CONNECTIONS),
                  "SOCKETIO_MAX_CONNECTIONS": str(SOCKETIO_MAX_CONNECTIONS),
                  # every load client comes from 127.0.0.1: no per-address cap
                  "SOCKETIO_MAX_PER_CLIENT": str(SOCKETIO_MAX_CONNECTIONS),
                  "LOG_LEVEL": "WARNING", "DEMO_STEP_DELAY": "0.2",
                  # one client creates every job, hundreds a minute: no limits, no quotas
                  "RATE_LIMIT": "0", "RATE_LIMIT_GLOBAL": "0", "QUOTA_JOBS": "0",
                  "QUOTA_BYTES": "0", "QUOTA_SNIPPETS": "0", "BATCH_ITEMS_PER_MINUTE": "0"}
        env = stack_env(self.redis.url, free_port(), **dict(common, **extra))
        web = Web(name, env, start_web(env, self.log_dir, name=name, app=WEB_APP))
        self.webs.append(web)
        return web

    @property
    def a(self) -> Web:
        """The web process without a message queue."""
        return self.webs[0]

    @property
    def b(self) -> Web:
        """The web process with the Redis message queue."""
        return self.webs[1]

    @property
    def g(self) -> Web:
        """The web process under gunicorn's gevent worker (no message queue)."""
        return self.webs[2]

    @property
    def store(self) -> JobStore:
        """The job store, on the bench's own Redis connection."""
        assert self.client is not None
        return JobStore(self.client)

    def create_jobs(self, count: int) -> list[str]:
        """``count`` job records (queued, nobody runs them): callbacks may report them."""
        ids = [new_id() for _ in range(count)]
        for job_id in ids:
            self.store.create(job_id, kind="bench")
        return ids

    @contextlib.contextmanager
    def worker(self, name: str, web: Web | None = None, args: list[str] | None = None,
               env: dict[str, str] | None = None, module: str = "worker") -> Iterator[Process]:
        """A worker process for the duration of the block (``python -m module``)."""
        environment = dict((web or self.a).env, **(env or {}))
        proc = start_worker(environment, self.log_dir, name=name, args=args, module=module)
        try:
            yield proc
        finally:
            proc.stop()

    def stop(self) -> None:
        """Stop every process and remove the temporary data."""
        for web in reversed(self.webs):
            web.proc.stop()
        if self.client is not None:
            self.client.close()
        self.redis.stop()
        self._tmp.cleanup()


def run_loadgen(web: Web, path: str, duration: float, concurrency: int, rate: float = 0.0,
                jobs: list[str] | None = None, tag: str = "bg", lines: int = 0,
                batch: int = 0) -> dict:
    """Run ``python -m bench.loadgen`` against ``web``; its JSON summary."""
    cmd = [sys.executable, "-m", "bench.loadgen", "--port", str(web.port), "--path", path,
           "--token", TEST_PROGRESS_TOKEN, "--duration", str(duration),
           "--concurrency", str(concurrency), "--rate", str(rate), "--tag", tag,
           "--jobs", ",".join(jobs or []), "--lines", str(lines), "--batch", str(batch)]
    out = subprocess.run(cmd, cwd=ROOT_DIR, capture_output=True, text=True, check=True,
                         timeout=duration + 60)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def start_loadgen(web: Web, path: str, duration: float, concurrency: int, rate: float,
                  jobs: list[str], tag: str = "bg") -> subprocess.Popen[str]:
    """The same, in the background."""
    cmd = [sys.executable, "-m", "bench.loadgen", "--port", str(web.port), "--path", path,
           "--token", TEST_PROGRESS_TOKEN, "--duration", str(duration),
           "--concurrency", str(concurrency), "--rate", str(rate), "--tag", tag,
           "--jobs", ",".join(jobs)]
    return subprocess.Popen(cmd, cwd=ROOT_DIR, stdout=subprocess.PIPE, text=True)


def measured_load(web: Web, path: str, duration: float, concurrency: int,
                  jobs: list[str] | None = None, tag: str = "bg", lines: int = 0,
                  batch: int = 0) -> dict:
    """:func:`run_loadgen`, closed loop, plus the server's CPU: ``server_cpu`` (share of
    one core over the run) and ``cpu_us`` (CPU µs per request)."""
    cpu_before = sum(web.worker_process().cpu_times()[:2])
    result = run_loadgen(web, path, duration, concurrency, jobs=jobs, tag=tag, lines=lines,
                         batch=batch)
    cpu = sum(web.worker_process().cpu_times()[:2]) - cpu_before
    result["server_cpu"] = cpu / result["seconds"]
    result["cpu_us"] = 1e6 * cpu / max(1, result["requests"])
    return result


def settle(seconds: float = 0.5) -> None:
    """Let the servers finish what the previous step started."""
    time.sleep(seconds)
