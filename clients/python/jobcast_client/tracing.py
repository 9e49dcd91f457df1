"""Optional OpenTelemetry: spans and W3C ``traceparent``, only when the API is installed.

With ``opentelemetry-api`` importable (``pip install 'jobcast-client[otel]'``), the
library wraps starts, claims and handler runs in spans and injects the current
context into each request it sends (``opentelemetry.propagate.inject``: a
``traceparent`` header). A claimed job that carries a ``traceparent`` (the site
puts the trace of the request that started it there) is the parent of its
handler's span. Without the package every function here is a no-op: nothing is
imported again, no span object is made. With the API but no SDK configured, the
API's own no-op tracer runs (a few microseconds per call).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping
from typing import Any

try:  # the [otel] extra
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # pragma: no cover - depends on what is installed
    trace = None  # type: ignore[assignment]

ENABLED = trace is not None
Context = Any  # an opentelemetry Context, or None without the package


def inject(headers: MutableMapping[str, str], context: Context = None) -> None:
    """Add ``traceparent`` (and whatever the propagators add) for ``context`` (the
    current one by default) to ``headers``."""
    if ENABLED:
        propagate.inject(headers, context=context)


def current() -> Context:
    """The current context, to carry to another thread (None without the package)."""
    return otel_context.get_current() if ENABLED else None


def from_traceparent(traceparent: object) -> Context:
    """The context a ``traceparent`` value names (None when there is none, or no package)."""
    if not ENABLED or not isinstance(traceparent, str) or not traceparent:
        return None
    return propagate.extract({"traceparent": traceparent})


@contextlib.contextmanager
def span(name: str, parent: Context = None, **attributes: str | int) -> Iterator[Context]:
    """Run the block in a span ``name`` (child of ``parent``, else of the current span);
    yields its context, for requests sent from other threads. A no-op without the package."""
    if not ENABLED:
        yield None
        return
    tracer = trace.get_tracer("jobcast_client")
    with tracer.start_as_current_span(name, context=parent, attributes=attributes):
        yield otel_context.get_current()
