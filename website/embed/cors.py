"""Cross-origin rules of the embeddable progress element.

Only the origins of ``EMBED_ORIGINS`` get CORS answers, and only where the element
needs them: its script and the vendored Socket.IO client (``/static/...``), the
wire names (``GET /api/protocol``), a job's state and log (``GET /api/jobs/<id>``,
``GET /api/jobs/<id>/log``, read with a watch token as a bearer token, which a
browser sends only after a preflight: answered here too) and the Socket.IO
endpoint (:func:`socket_origins`, Flask-SocketIO's ``cors_allowed_origins``).
Flask has no CORS of its own; this hook is a few lines over a fixed list of
endpoints, so no dependency (flask-cors) is added for it.

No answer allows credentials: a listed origin's page reads what its watch token
allows, never with the visitor's Jobcast session cookie (a WebSocket handshake
brings the cookie anyway when the origin is same-site: the connect handler drops
the session of a connection from another origin, ``website/realtime/sockets.py``).

The element's two scripts also say ``Cross-Origin-Resource-Policy: same-origin``:
a browser then refuses them to a plain ``<script src>`` of any other page, and a
``<script crossorigin>`` gets them only with the CORS header above, so only the
listed origins can run the element (docs/embedding.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, request

from website.http.security import own_origins

READ_ENDPOINTS = frozenset({"api.job_state", "api.job_log", "embed.protocol"})
SCRIPTS = frozenset({"jobcast-progress.js", "vendor/socket.io.min.js"})
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight's answer


def _shared(endpoint: str | None) -> tuple[bool, bool]:
    """(whether the endpoint answers listed origins, whether it is one of the scripts)."""
    if endpoint == "static":
        script = (request.view_args or {}).get("filename") in SCRIPTS
        return script, script
    return endpoint in READ_ENDPOINTS, False


def add_cors_headers(response: Response) -> Response:
    """``after_request``: the CORS headers for a listed origin on the shared endpoints."""
    shared, script = _shared(request.endpoint)
    if not shared:
        return response
    response.vary.add("Origin")
    if script:
        response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    origin = request.headers.get("Origin")
    if origin is None or origin.lower() not in current_app.config["EMBED_ORIGINS"]:
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET"
        response.headers["Access-Control-Allow-Headers"] = "Authorization"
        response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
    return response


def socket_origins(embed: tuple[str, ...], site_url: str) -> Callable[..., bool]:
    """Flask-SocketIO's ``cors_allowed_origins``: the site's own origin (as before:
    Engine.IO's default) and the ``embed`` origins; any other handshake's ``Origin``
    is refused (400)."""
    listed = frozenset(embed) | ({site_url.lower()} if site_url else frozenset())

    def allowed(origin: str | None, environ: dict[str, Any]) -> bool:
        if origin is None:
            return False  # no Origin header: nothing to allow (no CORS header)
        return origin.lower() in listed or origin in own_origins(environ)

    return allowed


def register(app: Flask) -> None:
    """Install the CORS hook."""
    app.after_request(add_cors_headers)
