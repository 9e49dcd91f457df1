"""Flask's signed-cookie sessions, with the signing serializer built once.

Flask's ``SecureCookieSessionInterface`` builds a new ``URLSafeTimedSerializer``
for every request (itsdangerous then test-encodes ``{}`` to learn the
serializer's type): about 15 µs of CPU per request, callbacks and Socket.IO-free
API calls included, for the same object each time. This interface keeps one per
app and builds a new one only when ``SECRET_KEY`` or ``SECRET_KEY_FALLBACKS``
change. Cookies, signatures and expiry are Flask's own.
"""

from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

_CACHE = "jobcast.session_serializer"


class CachedSecureCookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions; the serializer is reused while the keys stay."""

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        """The app's serializer for its current keys (None without a secret key)."""
        if not app.secret_key:
            return None
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        cached: tuple[object, URLSafeTimedSerializer] | None = app.extensions.get(_CACHE)
        if cached is not None and cached[0] == keys:
            return cached[1]
        serializer = super().get_signing_serializer(app)
        if serializer is not None:
            app.extensions[_CACHE] = (keys, serializer)
        return serializer


def register(app: Flask) -> None:
    """Use :class:`CachedSecureCookieSessions` for ``app``."""
    app.session_interface = CachedSecureCookieSessions()
