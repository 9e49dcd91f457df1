"""The site's traces (``shared/tracing.py``): a server span per request, continuing the
caller's ``traceparent`` (a worker's callback, a client library's request).

:func:`init_app` is the web entry point's tracing: ``create_app`` calls it first,
before any other hook is registered or middleware wraps the app. With
``OTEL_EXPORTER_OTLP_ENDPOINT`` unset it returns at once and nothing of
OpenTelemetry is imported. Set, it sets this process's tracing up (once; the
requests and redis instrumentations patch those libraries process-wide, which is
why it happens here, at the entry point, and only then) and instruments this app
with the Flask instrumentation: its ``before_request`` hook runs first (a request
another hook refuses still gets its span) and its WSGI wrapper is the innermost
(Socket.IO's own requests never reach Flask, so they get no span).
"""

from __future__ import annotations

import os

from flask import Flask

from shared import tracing
from shared.config import Config

SERVICE = "jobcast-web"
# Not traced: health checks, scrapes and static files (OTEL_PYTHON_FLASK_EXCLUDED_URLS
# replaces the list).
EXCLUDED_URLS = "/healthz,/metrics,/static/,/favicon"


def init_app(app: Flask, config: Config) -> None:
    """With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set: traces on, this app instrumented."""
    if not config.OTEL_EXPORTER_OTLP_ENDPOINT or not tracing.setup(config, SERVICE):
        return
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor.instrument_app(
        app, tracer_provider=tracing.provider(),
        excluded_urls=None if os.environ.get("OTEL_PYTHON_FLASK_EXCLUDED_URLS")
        else EXCLUDED_URLS)
