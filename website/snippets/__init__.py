"""The code-snippet highlighter: its pages, polling endpoint and JSON API."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the snippet pages and the snippet API."""
    from website.http import ratelimit
    from website.snippets import api, pages
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    ratelimit.limit(app, "snippets", "snippets.create", "snippets_api.create_snippet")
