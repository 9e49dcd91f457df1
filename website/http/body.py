"""Reading request bodies: JSON with hard limits on size and shape."""

from __future__ import annotations

import json

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

_LIMITS = "jobcast.body_limits"


def allow_body(app: Flask, max_bytes: int, *endpoints: str) -> None:
    """Let ``endpoints`` take bodies up to ``max_bytes`` (the site's default is lower).

    Applied before any other hook reads the body (the CSRF check reads forms).
    """
    limits: dict[str, int] = app.extensions.setdefault(_LIMITS, {})
    for endpoint in endpoints:
        if endpoint not in app.view_functions:
            raise ValueError(f"body limit for unknown endpoint {endpoint}")
        limits[endpoint] = max_bytes


def apply_body_limit() -> None:
    """``before_request``: the endpoint's own body limit, if it has one."""
    limit = current_app.extensions.get(_LIMITS, {}).get(request.endpoint or "")
    if limit:
        request.max_content_length = limit


def size_text(size: int) -> str:
    """``5242880`` -> ``"5 MB"``; ``524288`` -> ``"512 KB"``."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.3g} MB"
    return f"{size // 1024} KB"


def read_json_body(max_bytes: int) -> object | None:
    """The request's JSON body (any content type), None when it is not valid JSON text.

    Raises 413 when the body is over ``max_bytes``, also for a chunked body
    without ``Content-Length`` (which werkzeug would otherwise cut silently).
    Refused as not JSON: bad UTF-8, nesting too deep for Python, and strings
    with lone surrogates (``"\\ud800"``), which no store could encode.
    """
    request.max_content_length = max_bytes + 1
    raw = request.get_data(cache=True)
    if len(raw) > max_bytes:
        raise RequestEntityTooLarge()
    try:
        body = json.loads(raw)
        if _may_not_encode(raw):
            json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeError is a ValueError
        return None
    return body


def _may_not_encode(raw: bytes) -> bool:
    """Whether decoded JSON text could hold what encoding it back refuses.

    A lone surrogate comes only from a backslash-u escape, from the UTF-8 bytes
    of a surrogate (starting with 0xED, which ``json.loads`` lets through) or
    from UTF-16/32 text (which has NUL bytes); deep nesting needs many brackets.
    A usual report has none of these and skips the second pass.
    """
    return (b"\\u" in raw or b"\xed" in raw or b"\x00" in raw
            or raw.count(b"[") + raw.count(b"{") > 32)
