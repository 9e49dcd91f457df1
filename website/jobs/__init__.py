"""Jobs: the pages and JSON API that start and show jobs, the worker callback,
and job control (cancel, retry)."""

from __future__ import annotations

from flask import Flask

from website.http import ratelimit
from website.jobs import api, control, pages


def init_app(app: Flask) -> None:
    """Register the job pages, the JSON API, the callback and job control."""
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(control.bp)
    ratelimit.limit(app, "jobs", "jobs.create", "api.create_job",
                    "control.retry_page", "control.retry_api")
    ratelimit.limit(app, "cancel", "control.cancel_page", "control.cancel_api")
