"""Signed-cookie sessions with the serializer built once (website/http/sessions.py)."""

from __future__ import annotations

from flask import Flask, session

from website.http.sessions import CachedSecureCookieSessions


def _signed_cookie(app: Flask) -> str:
    with app.test_request_context("/"):
        session["who"] = "someone"
        serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
        assert serializer is not None
        return str(serializer.dumps(dict(session)))


def test_serializer_is_reused_and_follows_a_key_change(app: Flask) -> None:
    interface = app.session_interface
    assert isinstance(interface, CachedSecureCookieSessions)
    first = interface.get_signing_serializer(app)
    assert first is not None and interface.get_signing_serializer(app) is first
    cookie = _signed_cookie(app)
    old_key = app.config["SECRET_KEY"]
    app.config["SECRET_KEY"] = old_key + "-rotated"
    rotated = interface.get_signing_serializer(app)
    assert rotated is not None and rotated is not first
    assert not _loads(rotated, cookie)  # the old key no longer signs...
    app.config["SECRET_KEY_FALLBACKS"] = [old_key]
    with_fallback = interface.get_signing_serializer(app)
    assert with_fallback is not None and with_fallback is not rotated
    assert _loads(with_fallback, cookie) == {"who": "someone"}  # ...unless it is a fallback


def test_session_cookie_round_trips_through_requests(app: Flask) -> None:
    @app.get("/test-session-set")
    def set_value() -> str:
        session["n"] = 41
        return ""

    @app.get("/test-session-get")
    def get_value() -> str:
        return str(session.get("n", "none"))

    client = app.test_client()
    client.get("/test-session-set")
    assert client.get("/test-session-get").get_data(as_text=True) == "41"
    client.set_cookie("session", "forged.value.sig")
    assert client.get("/test-session-get").get_data(as_text=True) == "none"


def _loads(serializer: object, cookie: str) -> object:
    from itsdangerous import BadSignature

    try:
        return serializer.loads(cookie)  # type: ignore[attr-defined]
    except BadSignature:
        return None
