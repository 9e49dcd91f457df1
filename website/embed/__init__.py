"""Embedding: the progress element other sites put on their pages.

* ``/static/jobcast-progress.js`` defines ``<jobcast-progress job token>`` (a custom
  element in a shadow root; docs/embedding.md): it reads the wire names from
  ``GET /api/protocol``, loads the vendored Socket.IO client from the same origin,
  watches the job live and polls when it cannot.
* ``POST /api/jobs/<id>/watch-token`` (:mod:`website.embed.api`): whoever may control
  a job (its owner by session, ``controlToken`` or API key, or an operator) gets a
  short-lived read-only token for it (``WATCH_TOKEN_SECONDS``).
* Cross-origin (:mod:`website.embed.cors`): the origins of ``EMBED_ORIGINS``, and no
  others, may load the script, read a job's state and log, and open Socket.IO.
"""

from __future__ import annotations

from flask import Flask

from website.embed import api, cors


def init_app(app: Flask) -> None:
    """Register the watch-token and protocol routes and the CORS answers."""
    app.register_blueprint(api.bp)
    cors.register(app)
