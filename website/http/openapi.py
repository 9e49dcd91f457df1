"""The OpenAPI description of the JSON API, served at ``/api/openapi.json``."""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify

from shared.protocol import seq_limit
from shared.snippets import AUTO_DETECT, known_aliases

bp = Blueprint("openapi", __name__, url_prefix="/api")

OPENAPI_PATH = Path(__file__).with_name("openapi.json")


@lru_cache(maxsize=1)
def openapi_spec() -> dict[str, Any]:
    """The OpenAPI 3 description of the JSON API, kept in ``website/http/openapi.json``.

    The snippet languages are filled in from the installed Pygments, so the
    list cannot drift from what the site accepts; the callback's ``seq``
    maximum is the bound as of now (it only grows, so it stays true).
    """
    spec: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    seq = spec["components"]["schemas"]["ProgressUpdate"]["properties"]["seq"]
    seq["maximum"] = seq_limit(time.time())
    language = spec["components"]["schemas"]["SnippetSubmission"]["properties"]["language"]
    language["enum"] = [None, "", AUTO_DETECT, *sorted(known_aliases() - {AUTO_DETECT})]
    return spec


@bp.get("/openapi.json")
def openapi() -> Response:
    """Serve the OpenAPI spec (the callback contract and the JSON endpoints)."""
    return jsonify(openapi_spec())
