"""JSON API of the code-snippet highlighter: submit a snippet, read it back."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from website.auth.owners import control_token
from website.extensions import core
from website.http.answers import error_response
from website.http.body import read_json_body
from website.snippets.pages import (
    find_snippet,
    snippet_json,
    start_highlight,
    too_large_message,
    validate_submission,
)

bp = Blueprint("snippets_api", __name__, url_prefix="/api/snippets")


@bp.post("")
def create_snippet() -> tuple[Response, int, dict[str, str]] | tuple[Response | str, int]:
    """``{"source", "language"?}``: store it, enqueue its highlight; 202 with the
    snippet and the highlight job's ``controlToken``."""
    body = read_json_body(current_app.config["MAX_CONTENT_LENGTH"])
    if not isinstance(body, dict):
        return error_response(400, 'body must be a JSON object {"source": ..., "language": ...}')
    source, language = validate_submission(body.get("source"), body.get("language"))
    snippet, job = start_highlight(source, language)
    status_url = url_for("snippets_api.get_snippet", snippet_id=snippet.snippet_id)
    body = {**snippet_json(snippet, job), "controlToken": control_token(job.job_id)}
    return jsonify(body), 202, {"Location": status_url}


@bp.errorhandler(RequestEntityTooLarge)
def body_too_large(exc: RequestEntityTooLarge) -> tuple[Response | str, int]:
    """A body over the site's request limit: 413 with the snippet limit in the message."""
    return error_response(413, too_large_message(request.content_length))


@bp.get("/<snippet_id>")
def get_snippet(snippet_id: str) -> Response:
    """The snippet with its source, state and (once done) highlighted HTML; 404 if unknown."""
    snippet = find_snippet(snippet_id)
    job = core.store.get(snippet.job_id)
    return jsonify(snippet_json(snippet, job, with_source=True))
