"""The site's icon: ``static/favicon.svg``, linked by every page and also served
at ``/favicon.ico`` for the browsers and tools that ask there without reading
the page (answered with the same SVG, no redirect round trip)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, send_from_directory

bp = Blueprint("favicon", __name__)

ICON = "favicon.svg"
MAX_AGE = 7 * 24 * 3600


@bp.get("/favicon.ico")
def favicon() -> Response:
    """The site icon (SVG), cached for a week; anyone may fetch it."""
    folder = current_app.static_folder
    assert folder is not None  # the app is created with its static folder
    return send_from_directory(folder, ICON, mimetype="image/svg+xml", max_age=MAX_AGE)
