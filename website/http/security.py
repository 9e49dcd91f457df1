"""Site-wide protections: CSRF on forms, cross-site API refusal, security headers.

The rules are decided once here and apply to every route, including routes
added later:

* Every state-changing request (POST, PUT, PATCH, DELETE) outside ``/api/``
  needs the CSRF token of the session (Flask-WTF): forms carry it as the hidden
  field ``csrf_token`` (templates call ``csrf_token()``), scripts as the header
  ``X-CSRFToken``. A missing or wrong token is a 400 page saying so.
* ``/api/`` is for programs (workers, scripts) and is exempt from the token,
  but a browser request from another site is refused with 403: its ``Origin``
  must be this site, and ``Sec-Fetch-Site: cross-site`` is refused. Programs
  send neither header, so they are unaffected.
* :class:`Edge`, the one WSGI layer of these rules, sits around everything
  (Socket.IO and the connection cap's 503 included): it answers a ``Host`` not
  in ``TRUSTED_HOSTS`` with a plain 400 before Flask or Socket.IO see it (a
  DNS-rebound name cannot reach a site on 127.0.0.1; Flask's own
  ``TRUSTED_HOSTS`` guards its views only), puts the security headers below on
  every answer (a view may set its own), and logs ``wsgi.errors`` as records.

Socket.IO's cross-origin rule is Flask-SocketIO's ``cors_allowed_origins``
(same origin by default).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import SecurityError
from werkzeug.wsgi import get_host

from website.http.access import LoggingErrorStream
from website.http.answers import error_response

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

csrf = CSRFProtect()

API_PREFIX = "/api/"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")

STATIC_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


@lru_cache(maxsize=64)  # built once per Host (few), not per response
def content_security_policy(host: str) -> str:
    """The CSP: scripts, styles and connections only from this site (no inline script).

    ``connect-src`` names ``ws://``/``wss://`` of the host explicitly because
    older browsers do not count websockets as ``'self'``.
    """
    connect = "'self'"
    if _HOST_RE.match(host):
        connect += f" ws://{host} wss://{host}"
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        f"connect-src {connect}",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def _own_hosts() -> set[str]:
    hosts = {request.host.lower()}
    site = urlsplit(current_app.config.get("SITE_URL", ""))
    if site.netloc:
        hosts.add(site.netloc.lower())
    return hosts


def own_origins(environ: dict[str, Any]) -> list[str]:
    """The site's own origins for a request: as Engine.IO's default rule (scheme and
    ``Host``, and the ``X-Forwarded-*`` variant)."""
    found = []
    if "wsgi.url_scheme" in environ and "HTTP_HOST" in environ:
        scheme, host = environ["wsgi.url_scheme"], environ["HTTP_HOST"]
        found.append(f"{scheme}://{host}")
        if "HTTP_X_FORWARDED_PROTO" in environ or "HTTP_X_FORWARDED_HOST" in environ:
            scheme = environ.get("HTTP_X_FORWARDED_PROTO", scheme).split(",")[0].strip()
            host = environ.get("HTTP_X_FORWARDED_HOST", host).split(",")[0].strip()
            found.append(f"{scheme}://{host}")
    return found


def from_another_origin() -> bool:
    """True when the request (a Socket.IO handshake) names an ``Origin`` that is not the
    site's own (:func:`own_origins`, ``SITE_URL``): a page of ``EMBED_ORIGINS``, the only
    others Socket.IO lets in."""
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    site = current_app.config.get("SITE_URL", "").lower()
    return origin.lower() != site and origin not in own_origins(request.environ)


def cross_site_reason() -> str | None:
    """Why the current request looks like a browser request from another site, or None."""
    if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
        return "cross-site requests are not allowed"
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    if urlsplit(origin).netloc.lower() not in _own_hosts():
        return "cross-site requests are not allowed (Origin does not match this site)"
    return None


def _protect() -> tuple[Response | str, int] | None:
    if request.method not in UNSAFE_METHODS or not current_app.config["WTF_CSRF_ENABLED"]:
        return None
    if request.path.startswith(API_PREFIX):
        reason = cross_site_reason()
        return error_response(403, reason) if reason else None
    csrf.protect(apply_exemptions=True)
    return None


def security_headers(environ: dict[str, Any]) -> dict[str, str]:
    """The headers every response of the request described by ``environ`` gets."""
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
    headers = {**STATIC_HEADERS, "Content-Security-Policy": content_security_policy(host)}
    if environ.get("wsgi.url_scheme") == "https":
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers


class Edge:
    """WSGI middleware around the whole site: refuses a ``Host`` outside ``trusted`` (None
    or empty: any) with a plain 400, gives the request a ``wsgi.errors`` that logs, and
    adds :func:`security_headers` to every answer that lacks them."""

    def __init__(self, app: WSGIApp, trusted: list[str] | None) -> None:
        self.app = app
        self.trusted = trusted
        self.errors = LoggingErrorStream()

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Check the host, then call the app; add the missing headers to its answer."""
        def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            present = {name.lower() for name, _ in headers}
            # Read at response time: a proxy fix inside may have corrected the scheme.
            headers.extend((name, value) for name, value in security_headers(environ).items()
                           if name.lower() not in present)
            return start_response(status, headers, *exc_info)

        environ["wsgi.errors"] = self.errors
        if self.trusted:
            try:
                get_host(environ, self.trusted)
            except SecurityError:
                body = b"Host not allowed (TRUSTED_HOSTS)\n"
                start("400 Bad Request", [("Content-Type", "text/plain"),
                                          ("Content-Length", str(len(body)))])
                return [body]
        return self.app(environ, start)


def _csrf_error(exc: CSRFError) -> tuple[Response | str, int]:
    return error_response(400, f"{exc.description} Reload the page and try again.")


def register(app: Flask) -> None:
    """Install CSRF protection and the cross-site API rule (the headers: :class:`Edge`)."""
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False  # the rule above decides
    app.config.setdefault("WTF_CSRF_ENABLED", True)
    app.config.setdefault("SESSION_COOKIE_SAMESITE", "Lax")
    app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
    if app.config.get("SITE_URL", "").startswith("https://"):
        app.config.setdefault("SESSION_COOKIE_SECURE", True)
    csrf.init_app(app)  # also makes csrf_token() available to templates
    app.before_request(_protect)
    app.register_error_handler(CSRFError, _csrf_error)
