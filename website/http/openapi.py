"""The OpenAPI description of the JSON API, served at ``/api/openapi.json``."""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from shared.kinds import BUILTIN_MODULES, JobKind, load_kinds
from shared.kinds.highlight.snippets import AUTO_DETECT, known_aliases
from shared.protocol import DEMO_KIND, seq_limit

bp = Blueprint("openapi", __name__, url_prefix="/api")

OPENAPI_PATH = Path(__file__).with_name("openapi.json")


@lru_cache(maxsize=4)
def openapi_spec(kind_modules: tuple[str, ...] = BUILTIN_MODULES) -> dict[str, Any]:
    """The OpenAPI 3 description of the JSON API, kept in ``website/http/openapi.json``.

    The snippet languages are filled in from the installed Pygments, and the
    job submission from the kinds of ``kind_modules`` (``JOB_KINDS``), so
    neither can drift from what the site accepts; the callback's ``seq``
    maximum is the bound as of now (it only grows, so it stays true).
    """
    spec: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    schemas = spec["components"]["schemas"]
    schemas["ProgressUpdate"]["properties"]["seq"]["maximum"] = seq_limit(time.time())
    language = schemas["SnippetSubmission"]["properties"]["language"]
    language["enum"] = [None, "", AUTO_DETECT, *sorted(known_aliases() - {AUTO_DETECT})]
    schemas["JobSubmission"]["oneOf"] = [submission_schema(kind)
                                         for kind in load_kinds(kind_modules).values()
                                         if not kind.uploads and kind.check is None
                                         and not kind.hidden]
    return spec


def submission_schema(kind: JobKind) -> dict[str, Any]:
    """``{"kind": <name>, "args": <its schema>}`` as a JSON Schema (``kind`` may be
    left out for the demo, the default)."""
    return {"type": "object", "required": [] if kind.name == DEMO_KIND else ["kind"],
            "title": kind.title,
            "properties": {"kind": {"type": "string", "enum": [kind.name]}, "args": kind.args}}


@bp.get("/openapi.json")
def openapi() -> Response:
    """Serve the OpenAPI spec (the callback contract and the JSON endpoints)."""
    return jsonify(openapi_spec(tuple(current_app.config["JOB_KINDS"])))
