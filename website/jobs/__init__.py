"""Jobs: the pages and JSON API that start and show jobs, batches, and job control
(cancel, retry). Every start and change goes through the app's lifecycle
(``website.extensions.core``)."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask

from website.extensions import CORE
from website.http import ratelimit
from website.http.body import allow_body
from website.jobs import api, batch_routes, control, pages, rerun
from website.jobs.submit import FORM_OVERHEAD, largest_upload


def pretty_json(value: Any) -> str:
    """A result as indented JSON text (escaped by the template like any text)."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def init_app(app: Flask) -> None:
    """Register the job pages, the JSON API, batches and job control, with their body
    limits and rate limits."""
    kinds = app.extensions[CORE].kinds
    app.add_template_filter(pretty_json, "pretty_json")
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(control.bp)
    app.register_blueprint(batch_routes.bp)
    app.register_blueprint(rerun.bp)
    allow_body(app, batch_routes.BODY_MAX, "batches.create")
    allow_body(app, largest_upload(kinds) + FORM_OVERHEAD, "jobs.create", "api.create_job",
               "rerun.start", "rerun.ops_start")
    ratelimit.limit(app, "jobs", "jobs.create", "api.create_job", "batches.create",
                    "control.retry_page", "control.retry_api", "rerun.start",
                    "rerun.ops_start")
    ratelimit.limit(app, "cancel", "control.cancel_page", "control.cancel_api",
                    "batches.cancel")
