"""The code-snippet highlighter: its pages, polling endpoint, JSON API and Socket.IO
subscription (``{"snippetId"}``, or the seed's bare id string). Its jobs are of the
hidden ``highlight`` kind (``shared/kinds/highlight``)."""

from __future__ import annotations

from flask import Flask

from shared.kinds.highlight.snippets import HIGHLIGHT
from website.http import ratelimit
from website.realtime.sockets import subscription
from website.snippets import api, pages
from website.snippets.sockets import join_snippet


def init_app(app: Flask) -> None:
    """Register the snippet pages, the snippet API and the snippet subscription."""
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    ratelimit.limit(app, "snippets", "snippets.create", "snippets_api.create_snippet")
    subscription(app, "snippetId", join_snippet, bare=True)
    app.extensions.setdefault("jobcast.page_events", {})["highlight"] = HIGHLIGHT
