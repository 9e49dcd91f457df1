"""The Python library (clients/python, ``jobcast_client``) against a real stack: a caller
starting and watching a job to its result, a worker of an external kind (reports
batched, a cancel seen by its handler, a superseded attempt stopping it, SIGTERM),
a watch resuming across a web restart with no log line lost or repeated, and the
refusals as exceptions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from jobcast_client import (
    CancelRequested,
    Client,
    Conflict,
    Forbidden,
    InvalidArguments,
    Job,
    JobContext,
    LogLine,
    NotFound,
    QuotaExceeded,
    Unauthorized,
    WaitTimeout,
    Worker,
)

from tests.conftest import Stack, start_stack, stop_stack
from tests.support import (
    ROOT,
    TEST_OPS_TOKEN,
    TEST_WORKER_TOKEN,
    Process,
    free_port,
    simulate_work,
    start_web,
    wait_until,
)

KIND = "pyclient"  # tests/client_kinds.py


@pytest.fixture(scope="module")
def stack(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A real stack with the test kind, a two-second lease and no creation rate limits."""
    running = start_stack(log_dir, tmp_path_factory.mktemp("pyclient-redis"),
                          JOB_KINDS="tests.client_kinds", LEASE_SECONDS="2",
                          RATE_LIMIT="0", RATE_LIMIT_GLOBAL="0")
    yield running
    stop_stack(running)


def new_key(stack: Stack, name: str, **quota: int) -> str:
    """A fresh API key (made by an operator), with ``quota`` when given."""
    resp = requests.post(stack.url + "/api/keys", json={"name": name, "quota": quota}, timeout=5,
                         headers={"Authorization": f"Bearer {TEST_OPS_TOKEN}"})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["key"])


class Running:
    """A :class:`Worker` for the test kind on a thread of this process."""

    def __init__(self, url: str, handler: Callable[..., Any], max_jobs: int = 1) -> None:
        self.worker = Worker(url, TEST_WORKER_TOKEN, kinds={KIND: handler}, wait=2,
                             name="pytest-worker", stop_grace=5)
        self.thread = threading.Thread(target=self.worker.run, kwargs={"max_jobs": max_jobs},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop it and wait until it has."""
        self.worker.stop()
        self.thread.join(20)
        assert not self.thread.is_alive()


def test_a_caller_starts_and_watches_a_job_its_worker_runs_to_the_result(stack: Stack) -> None:
    def count(ctx: JobContext, n: int, tag: str = "") -> dict[str, Any]:
        for i in range(1, n + 1):  # as fast as it can: the reports are batched
            ctx.progress(i, total=n, message=f"step {i} of {n}")
            ctx.log(f"{tag} line {i}")
        return {"steps": n, "tag": tag, "attempt": ctx.attempt}

    worker = Running(stack.url, count)
    try:
        with Client(stack.url, new_key(stack, "watcher")) as jobs:
            job = jobs.start(KIND, {"n": 250, "tag": "fast"})
            assert job.state == "queued" and job.id
            events = list(jobs.watch(job.id, timeout=30))
            final = jobs.wait(job.id, timeout=10)
    finally:
        worker.close()
    lines = [e.text for e in events if isinstance(e, LogLine)]
    assert lines == [f"fast line {i}" for i in range(1, 251)]  # each once, in order
    states = [e for e in events if isinstance(e, Job)]
    assert states[-1] is events[-1] and states[-1].state == "succeeded"
    assert final.state == "succeeded" and final.result == {"steps": 250, "tag": "fast",
                                                           "attempt": 1}
    assert (final.current, final.total) == (250, 250)
    # 250 progress reports and 250 log lines went as a few requests, not 500
    assert worker.worker.jobs_done == 1
    assert 1 <= worker.worker.report_requests <= 20, worker.worker.report_requests


def test_the_handler_sees_a_cancel_and_the_job_ends_cancelled(stack: Stack) -> None:
    seen: list[str] = []

    def patient(ctx: JobContext, n: int, tag: str = "") -> None:
        try:
            for i in range(10_000):
                ctx.progress(i % 100, message="working")
                simulate_work(0.02)
        except CancelRequested:
            seen.append("cancel")
            raise

    worker = Running(stack.url, patient)
    try:
        with Client(stack.url) as jobs:  # no key: the job's controlToken cancels it
            job = jobs.start(KIND, {"n": 1})
            wait_until(lambda: jobs.get(job.id).state == "running", timeout=10,
                       what="the job to be claimed")
            assert jobs.cancel(job.id).state == "running"  # asked to stop: the worker stops it
            final = jobs.wait(job.id, timeout=15)
    finally:
        worker.close()
    assert seen == ["cancel"]
    assert final.state == "cancelled" and "the worker stopped" in final.message


def example_worker(stack: Stack, name: str, delay: str, url: str | None = None) -> Process:
    """examples/python_worker.py as a process of its own, for one job."""
    env = {"PATH": "/usr/bin:/bin", "JOBCAST_URL": url or stack.url,
           "WORKER_TOKEN": TEST_WORKER_TOKEN, "STEP_DELAY": delay, "ONCE": "1",
           "PYTHONUNBUFFERED": "1"}
    return Process(name, [sys.executable, str(ROOT / "examples" / "python_worker.py"), name],
                   env, stack.log_dir).start()


def start_external(stack: Stack, n: int) -> str:
    resp = requests.post(stack.url + "/api/jobs", json={"kind": "external", "args": {"n": n}},
                         timeout=5)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def tidy(stack: Stack, job_id: str) -> None:
    """Cancel a job nobody will run, so that the next test's worker does not claim it."""
    resp = requests.post(f"{stack.url}/api/jobs/{job_id}/cancel", timeout=5,
                         headers={"Authorization": f"Bearer {TEST_OPS_TOKEN}"})
    assert resp.status_code == 200, resp.text


def test_a_superseded_attempt_stops_its_handler(stack: Stack) -> None:
    job_id = start_external(stack, 1000)
    worker = example_worker(stack, "paused", "0.05")
    try:
        wait_until(lambda: (stack.job_state(job_id).get("current") or 0) >= 2, timeout=20,
                   what="the worker's first steps")
        worker.signal(signal.SIGSTOP)  # a frozen machine: no reports, no heartbeats
        try:
            requeued = wait_until(lambda: (s := stack.job_state(job_id))["state"] == "queued" and s,
                                  timeout=15, what="the lease to lapse")
            lines = len(requests.get(f"{stack.url}/api/jobs/{job_id}/log", timeout=5).json()["lines"])
        finally:
            worker.signal(signal.SIGCONT)
        wait_until(lambda: not worker.alive(), timeout=15, what="the worker to stop")
        assert f"stopped {job_id}: JobLost" in worker.log_tail(), worker.log_tail()
        assert "done" not in worker.log_tail()
    finally:
        worker.stop()
    assert "paused stopped reporting (lease lapsed)" in requeued["message"], requeued
    # the stale attempt's late reports (409) changed nothing
    assert stack.job_state(job_id) == requeued
    log = requests.get(f"{stack.url}/api/jobs/{job_id}/log", timeout=5).json()["lines"]
    assert len(log) == lines
    tidy(stack, job_id)


def test_sigterm_gives_the_running_job_back(stack: Stack) -> None:
    job_id = start_external(stack, 1000)
    worker = example_worker(stack, "terminated", "0.05")
    try:
        wait_until(lambda: (stack.job_state(job_id).get("current") or 0) >= 2, timeout=20,
                   what="the worker's first steps")
        worker.signal(signal.SIGTERM)
        wait_until(lambda: not worker.alive(), timeout=10, what="the worker to exit")
        assert worker.proc.returncode == 0, worker.log_tail()
        assert f"stopped {job_id}: WorkerStopping" in worker.log_tail()
        # given back: its lease lapses and it is queued again for the next attempt
        wait_until(lambda: stack.job_state(job_id)["state"] == "queued", timeout=10,
                   what="the job to be queued again")
    finally:
        worker.stop()
    state = stack.job_state(job_id)
    assert "terminated stopped reporting (lease lapsed)" in state["message"], state
    tidy(stack, job_id)


def test_a_stopped_worker_with_on_stop_fail_fails_its_job(stack: Stack) -> None:
    def endless(ctx: JobContext, n: int, tag: str = "") -> None:
        while True:
            ctx.progress(1, total=2, message="working")
            simulate_work(0.02)

    worker = Running(stack.url, endless)
    worker.worker.on_stop = "fail"
    with Client(stack.url) as jobs:
        job = jobs.start(KIND, {"n": 1})
        wait_until(lambda: jobs.get(job.id).current == 1, timeout=10, what="the handler to run")
        worker.close()  # Worker.stop(): what SIGTERM does
        final = jobs.wait(job.id, timeout=10)
    assert final.state == "failed"
    assert final.message == "worker pytest-worker stopped before the job ended"


def test_a_watch_resumes_after_a_web_restart_without_losing_or_repeating_lines(
        stack: Stack) -> None:
    # Two web processes on one message queue: the watcher's restarts while the worker
    # reports through the other, so lines are stored while the watcher is away.
    mq = {"SOCKETIO_MESSAGE_QUEUE": stack.env["REDIS_URL"]}
    watched_port = free_port()
    watched_env = {**stack.env, **mq, "PORT": str(watched_port),
                   "WEB_BIND": f"127.0.0.1:{watched_port}",
                   "SITE_URL": f"http://127.0.0.1:{watched_port}"}
    reported_port = free_port()
    reported_env = {**stack.env, **mq, "PORT": str(reported_port),
                    "WEB_BIND": f"127.0.0.1:{reported_port}",
                    "SITE_URL": f"http://127.0.0.1:{reported_port}"}
    watched = start_web(watched_env, stack.log_dir, name="web-watched")
    reported = start_web(reported_env, stack.log_dir, name="web-reported")
    away, replayed = threading.Event(), threading.Event()
    waits: list[bool] = []

    def phases(ctx: JobContext, n: int, tag: str = "") -> int:
        for i in range(1, n + 1):
            ctx.log(f"line {i}")
            if i == 20:
                waits.append(away.wait(30))  # lines 21-40 come while the watcher is away
            if i == 40:
                waits.append(replayed.wait(30))  # ...and reach it by the replay on reconnect
            simulate_work(0.01)
        return n

    worker = Running(reported_env["SITE_URL"], phases)
    restarted = None
    try:
        jobs = Client(watched_env["SITE_URL"])
        job = jobs.start(KIND, {"n": 60})
        seen: list[str] = []
        log_url = f"{stack.url}/api/jobs/{job.id}/log"
        for event in jobs.watch(job.id, timeout=60):
            if isinstance(event, LogLine):
                seen.append(event.text)
                if event.text == "line 20" and restarted is None:
                    watched.kill()  # a crash: no goodbye to the watcher
                    away.set()
                    wait_until(lambda: len(requests.get(log_url, timeout=5).json()["lines"]) == 40,
                               timeout=20, what="lines stored while the watcher is away")
                    restarted = start_web(watched_env, stack.log_dir, name="web-watched-2")
                if event.text == "line 40":
                    replayed.set()
        final = jobs.get(job.id)
    finally:
        away.set()
        replayed.set()
        worker.close()
        for proc in (watched, restarted, reported):
            if proc is not None:
                proc.stop()
    assert restarted is not None and waits == [True, True]
    assert seen == [f"line {i}" for i in range(1, 61)]
    assert final.state == "succeeded" and final.result == 60


def test_refusals_are_exceptions_named_for_them(stack: Stack) -> None:
    owner = Client(stack.url, new_key(stack, "owner"))
    other = Client(stack.url, new_key(stack, "other"))
    with pytest.raises(InvalidArguments) as bad:
        owner.start(KIND, {"n": "many"})
    assert "n" in bad.value.fields and bad.value.status == 400
    assert "n:" in str(bad.value)
    with pytest.raises(InvalidArguments) as unknown_kind:
        owner.start("no-such-kind", {})
    assert "kind" in unknown_kind.value.fields
    with pytest.raises(Unauthorized):
        Client(stack.url, "jc_" + "x" * 40).start(KIND, {"n": 1})
    job = owner.start(KIND, {"n": 1})
    with pytest.raises(Forbidden):
        other.cancel(job.id)
    assert owner.cancel(job.id).state == "cancelled"
    with pytest.raises(Conflict):
        owner.cancel(job.id)
    missing = "b3c123db-8f3b-479d-86f0-ef06212310e7"
    with pytest.raises(NotFound):
        owner.get(missing)
    with pytest.raises(NotFound):
        next(iter(owner.watch(missing, timeout=10)))
    waited = owner.start(KIND, {"n": 1})
    with pytest.raises(WaitTimeout):
        owner.wait(waited.id, timeout=0.5)  # nobody runs it
    small = Client(stack.url, new_key(stack, "small", jobs=1))
    held = small.start(KIND, {"n": 1})
    with pytest.raises(QuotaExceeded) as full:
        small.start(KIND, {"n": 2})
    assert full.value.status == 429 and full.value.retry_after is not None
    for job_id in (waited.id, held.id):
        tidy(stack, job_id)
    with pytest.raises(Unauthorized):
        Worker(stack.url, "wrong-token", kinds={KIND: lambda ctx, **args: None}, wait=0).run()


def test_tracing_wraps_start_claim_and_handler_and_injects_traceparent(stack: Stack,
                                                                       tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk")
    script = tmp_path / "traced.py"
    script.write_text(TRACED)
    done = subprocess.run([sys.executable, str(script), stack.url, TEST_WORKER_TOKEN],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["sent"].split("-")[1] == seen["start"]  # the start request carried its span
    assert {"jobcast.start", "jobcast.claim", "jobcast.run pyclient"} <= set(seen["names"])
    assert seen["handler_trace"] == seen["run"]  # the handler ran inside the run span
    assert seen["reported"] == seen["run"]  # ...and its reports (via a proxy) carried that trace
    assert seen["parented"] == ["4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"]
    assert stack.job_state(seen["job"])["state"] == "succeeded"


# Run in a process of its own: a tracer provider can be set once per process.
TRACED = """
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import requests
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from jobcast_client import Client, Worker, tracing

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
sent = []
jobs = Client(sys.argv[1])
jobs.http.session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request.headers))
job = jobs.start("pyclient", {"n": 1})
handled = []
def handler(ctx, n):
    handled.append(format(trace.get_current_span().get_span_context().trace_id, "032x"))
    ctx.progress(1, total=1)
    return n
reported = []
class Forward(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path == "/api/progress":
            reported.append(self.headers["traceparent"].split("-")[1])
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        answer = requests.post(sys.argv[1] + self.path, data=body, timeout=30, headers={
            name: self.headers[name] for name in ("Authorization", "Content-Type")})
        self.send_response(answer.status_code)
        for name in ("Content-Type", "X-Jobcast-State", "X-Jobcast-Cancel-Requested"):
            if name in answer.headers:
                self.send_header(name, answer.headers[name])
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)
    def log_message(self, *args):
        pass
proxy = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
threading.Thread(target=proxy.serve_forever, daemon=True).start()
proxied = f"http://127.0.0.1:{proxy.server_address[1]}"
Worker(proxied, sys.argv[2], kinds={"pyclient": handler}, wait=2).run(max_jobs=1)
spans = {s.name: s for s in exporter.get_finished_spans()}
with tracing.span("parented", parent=tracing.from_traceparent(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")):
    pass
parented = [s for s in exporter.get_finished_spans() if s.name == "parented"][0]
trace_of = lambda name: format(spans[name].context.trace_id, "032x")
print(json.dumps({"start": trace_of("jobcast.start"), "sent": sent[0]["traceparent"],
                  "names": sorted(spans), "run": trace_of("jobcast.run pyclient"),
                  "handler_trace": handled[0], "reported": reported[-1], "job": job.id,
                  "parented": [format(parented.context.trace_id, "032x"),
                               format(parented.parent.span_id, "016x")]}))
"""


def test_without_opentelemetry_the_library_works_and_traces_nothing(stack: Stack) -> None:
    # opentelemetry made unimportable, as on a machine without the [otel] extra
    script = ("import sys; sys.modules['opentelemetry'] = None\n"
              "from jobcast_client import Client, tracing\n"
              "assert not tracing.ENABLED\n"
              "job = Client(sys.argv[1]).start('pyclient', {'n': 1})\n"
              "print(job.state)\n")
    done = subprocess.run([sys.executable, "-c", script, stack.url], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["queued"]
