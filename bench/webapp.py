"""The site plus one bare endpoint, so that the callback is compared with a
do-nothing Flask view served by the same process in the same run.

gunicorn target: ``bench.webapp:create_app()``.
"""

from __future__ import annotations

from flask import Flask, Response

import website

BARE_PATH = "/api/bench/bare"  # under /api/: the same hooks as the callback


def create_app() -> Flask:
    """``website.create_app()`` with ``POST /api/bench/bare`` answering 204."""
    app = website.create_app()

    @app.post(BARE_PATH)
    def bare() -> Response:
        return Response(status=204)

    return app
