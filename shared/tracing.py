"""OpenTelemetry traces: off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

One trace follows a job (docs/operating.md, "Traces"): the request that started
it (the Flask server span), its enqueue (:func:`traced` on ``Lifecycle.start``
and ``start_batch``), its run in the worker (:func:`job_run`, around
``run_kind``) and each progress callback (the requests client span in the worker
and the site's server span that continues it).

How the context travels: a new job stores the W3C ``traceparent`` (and
``tracestate``) of its enqueue span as fields of its own hash (:func:`carrier`),
not in RQ's job: the hash is the one record every path shares. RQ's job is made
again by a retry, a pause's hand-back and a limit's release (its ``meta`` would be
lost or would have to be copied at each), and an external kind's job has no RQ job
at all: its claim answer is read from the hash (``website/claims``), which gives
the fields to external workers at no cost. The worker reads the two fields with
one HMGET when the job starts (only with tracing on); each callback then carries
the ``traceparent`` header, put there by the requests instrumentation.

Nothing is imported at module level: with the variable unset, no OpenTelemetry
module (API, SDK or exporter) is ever loaded, :func:`carrier` answers ``{}``,
:func:`traced` calls straight through and :func:`job_run` is a null context.
:func:`setup` is called only at process entry points (``website.create_app`` via
``website/http/tracing.py``, ``python -m worker``, the tick), never at import.
It also applies the requests and redis instrumentations, which patch those
libraries process-wide: that is why only entry points may call it, and only with
tracing on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import redis

from shared import keys

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

TRACEPARENT = "traceparent"  # W3C Trace Context: the job's hash fields, the claim answer's
TRACESTATE = "tracestate"
CONTEXT_FIELDS = (TRACEPARENT, TRACESTATE)
SCOPE = "jobcast"


class _State:
    """This process's tracing, once set up (None: off)."""

    provider: Any = None  # the SDK's TracerProvider
    tracer: Any = None  # ours: enqueue and run spans
    instrumented = False  # requests and redis are patched


_state = _State()


def enabled() -> bool:
    """True once :func:`setup` turned tracing on in this process."""
    return _state.tracer is not None


def setup(cfg: Any, service: str, processor: Any = None, libraries: bool = True) -> bool:
    """Turn tracing on in this process, once; True when it is on.

    Only process entry points call it. With ``cfg.OTEL_EXPORTER_OTLP_ENDPOINT``
    empty (and no ``processor``) it does nothing and imports nothing. Else it
    sets up a TracerProvider (service ``OTEL_SERVICE_NAME``, else ``service``)
    exporting over OTLP/HTTP through a BatchSpanProcessor, makes it the global
    one, and with ``libraries`` instruments requests and redis (monkey-patching
    them, hence entry points only). ``processor`` (tests: the in-memory exporter's)
    replaces the exporter; given when tracing is on already, it is added.
    """
    if enabled():
        if processor is not None:
            _state.provider.add_span_processor(processor)
        return True
    if not cfg.OTEL_EXPORTER_OTLP_ENDPOINT and processor is None:
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if processor is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter(
            endpoint=_traces_url(cfg.OTEL_EXPORTER_OTLP_ENDPOINT)))
    name = cfg.OTEL_SERVICE_NAME or service
    sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else _sampler()
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}), sampler=sampler)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)  # for anything else that traces (first one wins)
    _state.provider = provider
    _state.tracer = provider.get_tracer(SCOPE)
    if libraries:
        _instrument_libraries(provider)
    log.info("tracing on: %s exports to %s", name,
             cfg.OTEL_EXPORTER_OTLP_ENDPOINT or type(processor).__name__)
    return True


def _traces_url(endpoint: str) -> str | None:
    """The traces URL for a base ``endpoint``, as the SDK builds it from the variable
    (None: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set and the exporter reads it)."""
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return None
    return endpoint.rstrip("/") + "/v1/traces"


def _sampler() -> Any:
    """Every trace, except those a client span would start: a Redis command or an HTTP
    call made outside any request or job (RQ's polling, the relay's listener, the
    worker's start-up check) is not a trace of its own. A span with a parent follows
    its parent's decision (W3C ``sampled`` flag)."""
    from opentelemetry.sdk.trace.sampling import (
        ALWAYS_OFF,
        ALWAYS_ON,
        ParentBased,
        Sampler,
        SamplingResult,
    )
    from opentelemetry.trace import SpanKind

    class NoClientRoots(Sampler):
        """Drops root spans of kind CLIENT; samples every other root."""

        def should_sample(self, parent_context: Any, trace_id: int, name: str,
                          kind: Any = None, attributes: Any = None, links: Any = None,
                          trace_state: Any = None) -> SamplingResult:
            """ALWAYS_OFF's answer for a client span, ALWAYS_ON's for the others."""
            which = ALWAYS_OFF if kind == SpanKind.CLIENT else ALWAYS_ON
            return which.should_sample(parent_context, trace_id, name, kind, attributes,
                                       links, trace_state)

        def get_description(self) -> str:
            """Named in the SDK's logs."""
            return "NoClientRoots"

    return ParentBased(root=NoClientRoots())


def _instrument_libraries(provider: Any) -> None:
    """Patch requests (client spans, ``traceparent`` injected) and redis (a span per
    command or pipeline) process-wide; once."""
    if _state.instrumented:
        return
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    RequestsInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    _state.instrumented = True


def stop() -> None:
    """Turn tracing off again in this process (tests): flush, undo the libraries'
    patches, emit no more spans. The global provider stays (it cannot be unset)."""
    if not enabled():
        return
    flush()
    if _state.instrumented:
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        RequestsInstrumentor().uninstrument()
        RedisInstrumentor().uninstrument()
        _state.instrumented = False
    _state.tracer = None
    _state.provider = None


def flush(timeout_millis: int = 5000) -> None:
    """Export the spans still queued (a forked RQ work horse exits with ``os._exit``:
    what it does not flush is lost)."""
    if _state.provider is not None:
        _state.provider.force_flush(timeout_millis)


def provider() -> Any:
    """This process's TracerProvider (None while tracing is off)."""
    return _state.provider


def carrier() -> dict[str, str]:
    """The current span's W3C context as fields to store (``{}`` with tracing off)."""
    if not enabled():
        return {}
    from opentelemetry import propagate

    fields: dict[str, str] = {}
    propagate.inject(fields)
    return {name: fields[name] for name in CONTEXT_FIELDS if fields.get(name)}


def stored_context(fields: Mapping[str, str]) -> dict[str, str]:
    """The trace context fields among a job's stored ``fields`` (a claim answer's)."""
    return {name: fields[name] for name in CONTEXT_FIELDS if fields.get(name)}


def traced(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the decorated function in a span ``name`` (a child of the current one) while
    tracing is on; with it off, one check and a plain call."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @wraps(function)
        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            if _state.tracer is None:
                return function(*args, **kwargs)
            with _state.tracer.start_as_current_span(name):
                return function(*args, **kwargs)

        return call

    return decorate


def annotate(**attributes: str) -> None:
    """Set ``jobcast.<name>`` attributes on the current span (nothing with tracing off)."""
    if not enabled():
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    for key, value in attributes.items():
        span.set_attribute(f"{SCOPE}.{key}", value)


def job_run(client: redis.Redis, job_id: str, kind: str) -> AbstractContextManager[None]:
    """A span around one run of a job, parented by the context stored with it (a null
    context with tracing off: nothing is read)."""
    if not enabled():
        return nullcontext()
    return _job_run(client, job_id, kind)


@contextmanager
def _job_run(client: redis.Redis, job_id: str, kind: str) -> Iterator[None]:
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    try:
        values = client.hmget(keys.job_key(job_id), list(CONTEXT_FIELDS))
    except redis.RedisError as exc:  # a run without its trace is still a run
        log.info("job %s: its trace context could not be read: %s", job_id, exc)
        values = [None, None]
    stored = {name: _text(value) for name, value in zip(CONTEXT_FIELDS, values, strict=True)
              if value}
    parent = propagate.extract(stored) if stored else None
    try:
        with _state.tracer.start_as_current_span(
                "jobcast.run", context=parent, kind=SpanKind.CONSUMER,
                attributes={f"{SCOPE}.job_id": job_id, f"{SCOPE}.kind": kind}):
            yield
    finally:
        flush()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
