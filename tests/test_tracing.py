"""Traces (shared/tracing.py): one trace follows a job, from the request that started it
to its last progress callback; with tracing off nothing of OpenTelemetry is loaded.

The in-process test records spans with the SDK's in-memory exporter: the site runs in
a thread behind a real HTTP server, and the job runs through the worker's own code
path (RQ's SimpleWorker calling ``run_kind``), so the context travels through the
real mechanisms: the fields stored in the job's hash, and the ``traceparent`` header
of each callback. The cross-process test (a real gunicorn site and a real forked
worker) reads what they export over OTLP/HTTP with a tiny receiver that decodes the
protobuf (opentelemetry-proto).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import redis
import requests
from flask import Flask
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from rq import SimpleWorker
from werkzeug.serving import make_server

from shared import keys, tracing
from shared.config import Config
from shared.rqconf import SERIALIZER, rq_queue
from tests.conftest import start_stack, stop_stack
from tests.support import (
    ROOT,
    TEST_PROGRESS_TOKEN,
    TEST_SECRET_KEY,
    TEST_WORKER_TOKEN,
    free_port,
    wait_until,
)
from website import create_app

ENDPOINT = "http://127.0.0.1:9"  # never called in-process: the in-memory exporter is set up first


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, recording to memory; off again afterwards."""
    memory = InMemorySpanExporter()
    cfg = SimpleNamespace(OTEL_EXPORTER_OTLP_ENDPOINT=ENDPOINT, OTEL_SERVICE_NAME="")
    assert tracing.setup(cfg, "jobcast-test", processor=SimpleSpanProcessor(memory))
    yield memory
    tracing.stop()


@pytest.fixture
def site(redis_url: str, monkeypatch: pytest.MonkeyPatch,
         spans: InMemorySpanExporter) -> Iterator[tuple[str, Config]]:
    """The traced site on a real HTTP server in a thread, and its settings; the worker's
    environment points at it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = Config(environ={}, SECRET_KEY=TEST_SECRET_KEY, PROGRESS_TOKEN=TEST_PROGRESS_TOKEN,
                    WORKER_TOKEN=TEST_WORKER_TOKEN, REDIS_URL=redis_url, ASYNC_MODE="threading",
                    OPS_TOKEN="ops", OTEL_EXPORTER_OTLP_ENDPOINT=ENDPOINT, SITE_URL=url)
    app = create_app(config)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name, value in {"REDIS_URL": redis_url, "SITE_URL": url,
                        "SECRET_KEY": TEST_SECRET_KEY, "PROGRESS_TOKEN": TEST_PROGRESS_TOKEN,
                        "WORKER_TOKEN": TEST_WORKER_TOKEN, "DEMO_STEP_DELAY": "0",
                        "JOBCAST_ENV": "production"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PROGRESS_URL", raising=False)
    yield url, config
    server.shutdown()
    thread.join(5)


def post_json(url: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    """POST with urllib (not instrumented: like a browser or curl, it sends no
    ``traceparent``, so the site's server span is the trace's root)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
        return json.loads(answer.read() or b"{}")  # type: ignore[no-any-return]


def run_queued_jobs(cfg: Config) -> None:
    """Work RQ's queue once through, in this process: ``run_kind`` as a worker runs it."""
    conn = redis.Redis.from_url(cfg.REDIS_URL)
    SimpleWorker([rq_queue(cfg.QUEUE_NAME, conn)], connection=conn, serializer=SERIALIZER,
                 log_job_description=False).work(burst=True)
    conn.close()


def one(found: list[ReadableSpan], what: str) -> ReadableSpan:
    """The only span of ``found``."""
    assert len(found) == 1, f"{what}: {[s.name for s in found]}"
    return found[0]


def traceparent_of(span: ReadableSpan) -> str:
    """The W3C traceparent that names ``span``."""
    context = span.get_span_context()
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def test_one_trace_follows_a_job_from_its_request_to_its_callbacks(
        site: tuple[str, Config], spans: InMemorySpanExporter,
        redis_client: redis.Redis) -> None:
    url, config = site
    job_id = post_json(url + "/api/jobs", {"kind": "demo", "args": {"steps": 3}})["id"]
    run_queued_jobs(config)
    wait_until(lambda: len([s for s in spans.get_finished_spans()
                            if s.name == "POST /api/progress"]) >= 4, timeout=10,
               what="the callbacks' server spans")
    finished = list(spans.get_finished_spans())
    by_id = {s.context.span_id: s for s in finished if s.context is not None}

    def children(parent: ReadableSpan, name: str | None = None,
                 kind: SpanKind | None = None) -> list[ReadableSpan]:
        assert parent.context is not None
        return [s for s in finished if s.parent is not None
                and s.parent.span_id == parent.context.span_id
                and (name is None or s.name == name) and (kind is None or s.kind == kind)]

    request = one([s for s in finished if s.name == "POST /api/jobs"], "the start request")
    assert request.kind == SpanKind.SERVER and request.parent is None
    enqueue = one(children(request, "jobcast.enqueue"), "the enqueue")
    assert enqueue.attributes is not None and enqueue.attributes["jobcast.job_id"] == job_id
    # The context travels in the job: its hash holds the enqueue span's traceparent.
    assert redis_client.hget(keys.job_key(job_id), "traceparent") == traceparent_of(enqueue)
    run = one(children(enqueue, "jobcast.run"), "the run")
    assert run.kind == SpanKind.CONSUMER
    assert run.attributes is not None and run.attributes["jobcast.job_id"] == job_id
    calls = children(run, kind=SpanKind.CLIENT)
    callbacks = [c for c in calls if c.name.startswith("POST")]  # the others: Redis commands
    assert len(callbacks) >= 4, [c.name for c in calls]  # 3 steps (+ log flushes) + the end
    for call in callbacks:  # each continued by the site (the traceparent header)
        served = one(children(call, kind=SpanKind.SERVER), "the callback's server span")
        assert served.name == "POST /api/progress"
    # The redis instrumentation: the start's Redis commands are the enqueue's children.
    assert children(enqueue, kind=SpanKind.CLIENT)
    trace_ids = {s.context.trace_id for s in finished if s.context is not None
                 and _in_tree(s, request, by_id)}
    assert trace_ids == {request.context.trace_id}  # type: ignore[union-attr]
    assert len([s for s in finished if _in_tree(s, request, by_id)]) >= 12
    # Outside any request or job (RQ's polling), no trace is started: no stray roots.
    roots = [s for s in finished if s.parent is None]
    assert [s.name for s in roots] == ["POST /api/jobs"], [s.name for s in roots]


def _in_tree(span: ReadableSpan, root: ReadableSpan, by_id: dict[int, ReadableSpan]) -> bool:
    """Whether ``span`` descends from ``root`` (or is it)."""
    current: ReadableSpan | None = span
    while current is not None:
        if current is root:
            return True
        current = by_id.get(current.parent.span_id) if current.parent is not None else None
    return False


def test_a_claim_answers_the_jobs_trace_context(site: tuple[str, Config],
                                                spans: InMemorySpanExporter,
                                                redis_client: redis.Redis) -> None:
    url, _config = site
    job_id = post_json(url + "/api/jobs", {"kind": "external", "args": {"n": 2}})["id"]
    stored = redis_client.hget(keys.job_key(job_id), "traceparent")
    claimed = post_json(url + "/api/workers/claim", {"kinds": ["external"], "worker": "w1"},
                        token=TEST_WORKER_TOKEN)
    assert claimed["jobId"] == job_id
    enqueue = one([s for s in spans.get_finished_spans() if s.name == "jobcast.enqueue"],
                  "the enqueue")
    assert claimed["traceparent"] == stored == traceparent_of(enqueue)


def test_without_the_variable_nothing_is_traced_nor_loaded(app: Flask,
                                                           redis_client: redis.Redis) -> None:
    assert not tracing.enabled()
    job_id = app.test_client().post("/api/jobs", json={"kind": "demo"}).get_json()["id"]
    assert redis_client.hget(keys.job_key(job_id), "traceparent") is None
    # A fresh process that builds the site and loads the worker imports no tracing SDK,
    # exporter, propagator or instrumentation. (redis-py 8 itself imports the SDK's
    # metrics module, and with it the API's trace module, when the SDK is installed, for
    # its own metrics, off unless set up.)
    ours = ("opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.instrumentation",
            "opentelemetry.propagate")
    code = ("import sys, website, worker.__main__, worker.runner, worker.cron\n"
            "website.create_app({'SECRET_KEY': 's', 'PROGRESS_TOKEN': 'p', "
            "'WORKER_TOKEN': 'w', 'OPS_TOKEN': 'o'})\n"
            f"print(sorted(m for m in sys.modules if m.startswith({ours!r})))\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "JOBCAST_ENV": "production"}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, timeout=60,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP traces receiver: decodes each export and keeps its spans."""

    got: list[tuple[str, Any]]  # (service name, span)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            service = next((a.value.string_value for a in resource_spans.resource.attributes
                            if a.key == "service.name"), "")
            for scope in resource_spans.scope_spans:
                self.got.extend((service, span) for span in scope.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - its signature
        """Quiet."""


@pytest.mark.parametrize("async_mode", ["eventlet", "gevent"])
def test_a_real_site_and_worker_export_one_trace_per_job(log_dir: Path, tmp_path: Path,
                                                         async_mode: str) -> None:
    got: list[tuple[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"got": got})
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{receiver.server_address[1]}"
    stack = start_stack(log_dir, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
                        ASYNC_MODE=async_mode,
                        OTEL_BSP_SCHEDULE_DELAY="200", DEMO_STEP_DELAY="0.01")
    try:
        job_id = requests.post(stack.url + "/api/jobs", json={"kind": "demo",
                                                              "args": {"steps": 2}},
                               timeout=10).json()["id"]
        wait_until(lambda: stack.job_state(job_id)["state"] == "succeeded", timeout=20,
                   what="the job to succeed")
        wait_until(lambda: len([s for _, s in got if s.name == "POST /api/progress"]) >= 3,
                   timeout=10, what="the callbacks' spans to be exported")
    finally:
        stop_stack(stack)
        receiver.shutdown()
    spans = {bytes(s.span_id): (service, s) for service, s in got}
    enqueue = next(s for _, s in spans.values() if s.name == "jobcast.enqueue")
    trace_id = bytes(enqueue.trace_id)
    in_trace = [(service, s) for service, s in spans.values() if bytes(s.trace_id) == trace_id]
    request = spans[bytes(enqueue.parent_span_id)]
    assert request == ("jobcast-web", request[1]) and request[1].name == "POST /api/jobs"
    run = next(s for service, s in in_trace if s.name == "jobcast.run")
    assert bytes(run.parent_span_id) == bytes(enqueue.span_id)
    assert spans[bytes(run.span_id)][0] == "jobcast-worker"
    served = [s for service, s in in_trace if s.name == "POST /api/progress"]
    assert len(served) >= 3
    for span in served:  # web <- worker's client span <- the run
        client = spans[bytes(span.parent_span_id)]
        assert client[0] == "jobcast-worker" and bytes(client[1].parent_span_id) == bytes(
            run.span_id)
