"""Jobs: the pages and JSON API that start and show jobs, the worker callback,
and job control (cancel, retry)."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask

from shared.kinds import load_kinds


def pretty_json(value: Any) -> str:
    """A result as indented JSON text (escaped by the template like any text)."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def init_app(app: Flask) -> None:
    """Load the job kinds (``JOB_KINDS``); register the job pages, the JSON API,
    the callback and job control."""
    from website.http import ratelimit
    from website.http.body import allow_body
    from website.jobs import api, batches, control, pages, services
    from website.jobs.submit import FORM_OVERHEAD, largest_upload
    every = load_kinds(app.config["JOB_KINDS"])
    kinds = {name: kind for name, kind in every.items() if not kind.hidden}
    app.extensions[services.KINDS_EXTENSION] = kinds
    app.extensions[services.HIDDEN_KINDS_EXTENSION] = {
        name: kind for name, kind in every.items() if kind.hidden}
    app.add_template_filter(pretty_json, "pretty_json")
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(control.bp)
    app.register_blueprint(batches.bp)
    allow_body(app, batches.BODY_MAX, "batches.create")
    allow_body(app, largest_upload(kinds) + FORM_OVERHEAD, "jobs.create", "api.create_job")
    ratelimit.limit(app, "jobs", "jobs.create", "api.create_job", "batches.create",
                    "control.retry_page", "control.retry_api")
    ratelimit.limit(app, "cancel", "control.cancel_page", "control.cancel_api")
