"""Reading request bodies: JSON with hard limits on size and shape."""

from __future__ import annotations

import json

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge


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
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):  # UnicodeError is a ValueError
        return None
    return body
